"""Regression: SFT carries loss on the assistant turn only, never on the prompt.

A peer once trained on the prompt instead of the response. The expected split is computed here independently:
the chat template applied to the prompt alone (with the generation prompt) is the masked prefix, the rest of the
prompt+completion rendering is the target.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from integration_helpers import load_cfg

IGNORE = -100
CPU_PAD_MULTIPLE = 64  # selfreward.stages.training's; a test that read it could not catch a change of it
END_OF_TURN = "<|im_end|>\n"  # what SmolLM2's template appends after an assistant message

ROWS = [
    # no system message: the template injects SmolLM2's default system prompt, which must be masked too
    {"prompt": [{"role": "user", "content": "What is the capital of France?"}],
     "completion": [{"role": "assistant", "content": "The capital of France is Paris."}]},
    # explicit system message
    {"prompt": [{"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "Name a primary color."}],
     "completion": [{"role": "assistant", "content": "Blue"}]},
    # multi-turn prompt: the earlier assistant turn is context, not target
    {"prompt": [{"role": "user", "content": "Count to three."},
                {"role": "assistant", "content": "1, 2, 3"},
                {"role": "user", "content": "Now backwards, please."}],
     "completion": [{"role": "assistant", "content": "3, 2, 1 - done! Score: 5"}]},
]


def expected_split(tokenizer, row):
    """(prompt ids, full ids) from the chat template, independently of TRL."""
    prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True,
                                             return_dict=True)["input_ids"]
    assert full_ids[:len(prompt_ids)] == prompt_ids, "template must render the prompt as a prefix"
    return prompt_ids, full_ids


@pytest.fixture(scope="module")
def sft_trainer(tiny_model_dir, tmp_path_factory):
    from selfreward.stages.sft import build_trainer

    cfg = load_cfg(tiny_model_dir)
    return build_trainer(cfg, str(tiny_model_dir), tmp_path_factory.mktemp("sft-trainer"), ROWS)


def test_prompt_is_masked_and_assistant_turn_is_the_target(sft_trainer, tokenizer):
    ds = sft_trainer.train_dataset
    assert len(ds) == len(ROWS)
    for i, row in enumerate(ROWS):
        prompt_ids, full_ids = expected_split(tokenizer, row)
        ex = ds[i]
        assert ex["input_ids"] == full_ids
        labels = ex["labels"]
        assert labels == [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids):]

        # every prompt token, down to the assistant header, is ignored
        assert tokenizer.decode(ex["input_ids"][:len(prompt_ids)]).endswith("<|im_start|>assistant\n")
        assert all(lab == IGNORE for lab in labels[:len(prompt_ids)])
        # and the trained tokens are exactly the assistant content plus the end-of-turn text
        trained = [tok for tok, lab in zip(ex["input_ids"], labels) if lab != IGNORE]
        assert [lab for lab in labels if lab != IGNORE] == trained
        assert tokenizer.decode(trained) == row["completion"][0]["content"] + END_OF_TURN
        positions = [p for p, lab in enumerate(labels) if lab != IGNORE]
        assert positions == list(range(len(prompt_ids), len(full_ids)))


def test_default_system_prompt_and_earlier_turns_are_never_trained(sft_trainer, tokenizer):
    for i in (0, 2):
        ex = sft_trainer.train_dataset[i]
        trained_text = tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE])
        assert "SmolLM" not in trained_text and "<|im_start|>" not in trained_text
    ex = sft_trainer.train_dataset[2]
    masked_text = tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab == IGNORE])
    assert "1, 2, 3" in masked_text and "Now backwards" in masked_text


def test_collated_batch_keeps_the_mask_and_the_loss_is_over_the_completion(sft_trainer, tokenizer):
    ds = sft_trainer.train_dataset
    batch = sft_trainer.data_collator([ds[i] for i in range(len(ds))])
    lengths = [len(expected_split(tokenizer, r)[1]) for r in ROWS]
    width = batch["input_ids"].shape[1]
    assert batch["input_ids"].shape[0] == len(ROWS) and max(lengths) <= width < max(lengths) + CPU_PAD_MULTIPLE
    manual_nll, count = 0.0, 0
    model = sft_trainer.model
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss.item()
    for i, row in enumerate(ROWS):
        prompt_ids, full_ids = expected_split(tokenizer, row)
        want = [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids):] + [IGNORE] * (width - len(full_ids))
        assert batch["labels"][i].tolist() == want
        assert batch["attention_mask"][i].tolist() == [1] * len(full_ids) + [0] * (width - len(full_ids))
        for t in range(len(prompt_ids), len(full_ids)):
            manual_nll -= torch.log_softmax(logits[i, t - 1], -1)[full_ids[t]].item()
            count += 1
    assert loss == pytest.approx(manual_nll / count, abs=1e-4)


def test_cpu_batches_are_padded_to_a_multiple_and_the_pads_change_no_loss(sft_trainer):
    """Regression: unpadded CPU batches gave oneDNN a new shape, and a new cached kernel, at nearly every step; SFT
    of the default model grew to 5.8 GB. The pads must be masked out: the loss is that of the unpadded batch."""
    ds = sft_trainer.train_dataset
    examples = [ds[i] for i in range(len(ds))]
    padded = sft_trainer.data_collator(examples)
    tight = dataclasses.replace(sft_trainer.data_collator, pad_to_multiple_of=None)(examples)
    assert padded["input_ids"].shape[1] % CPU_PAD_MULTIPLE == 0
    assert tight["input_ids"].shape[1] < padded["input_ids"].shape[1]
    model = sft_trainer.model
    with torch.no_grad():
        losses = [model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss.item()
                  for b in (padded, tight)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_real_sft_examples_train_on_response_and_judgment(tiny_model_dir, tmp_path, tokenizer):
    """The rows the sft stage builds (IFT answers and EFT judgments): the target is the completion, nothing else."""
    from selfreward.judges.rubric_parse import parse_score
    from selfreward.stages.sft import build_trainer, examples

    cfg = load_cfg(tiny_model_dir, "data.max_ift=2", "data.max_eft=2")
    rows = examples(cfg)
    assert len(rows) == 4
    # EFT rows are rendered judge prompts whose target ends with a score line
    assert all(parse_score(r["completion"][0]["content"]) is not None for r in rows[2:])
    assert all("<question>" in r["prompt"][0]["content"] for r in rows[2:])
    trainer = build_trainer(cfg, str(tiny_model_dir), tmp_path / "trainer", rows)
    assert len(trainer.train_dataset) == len(rows)
    for i, row in enumerate(rows):
        ex = trainer.train_dataset[i]
        prompt_ids, full_ids = expected_split(tokenizer, row)
        assert ex["labels"] == [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids):]
        trained = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE]
        assert tokenizer.decode(trained) == row["completion"][0]["content"] + END_OF_TURN
