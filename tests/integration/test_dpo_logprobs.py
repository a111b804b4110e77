"""Regression: DPO scores completion token t with the logits at t-1 (a peer once used the logits at t).

The sequence log-probabilities that TRL's DPOTrainer computes for the reference are recomputed here with an
explicit loop over completion positions, from a plain forward pass of the same model.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from integration_helpers import load_cfg

END_OF_TURN = "<|im_end|>\n"

PAIRS = [
    {"prompt": "What is two plus two?", "chosen": "Two plus two is four.", "rejected": "Five."},
    {"prompt": "Give me a synonym for happy, and explain the nuance briefly.", "chosen": "Glad",
     "rejected": "Joyful: it is stronger and more exuberant than happy."},
    {"prompt": "Say hi.", "chosen": "Hi there! How can I help you today?", "rejected": "Hello"},
]


@pytest.fixture(scope="module")
def dpo(tiny_model_dir, tmp_path_factory):
    from selfreward.stages.dpo import build_trainer, preference_rows

    cfg = load_cfg(tiny_model_dir, "dpo.mixed_precision=fp32", "dpo.precompute_ref_log_probs=false")
    trainer = build_trainer(cfg, str(tiny_model_dir), tmp_path_factory.mktemp("dpo-trainer"), preference_rows(PAIRS))
    ds = trainer.train_dataset
    batch = trainer.data_collator([ds[i] for i in range(len(ds))])
    return trainer, batch


def manual_logps(model, batch, shift: int) -> list[float]:
    """Sum over completion positions t of log_softmax(logits[t - shift])[input_ids[t]]; shift=1 is correct."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    out = []
    for i in range(batch["input_ids"].shape[0]):
        total = 0.0
        for t in range(batch["input_ids"].shape[1]):
            if batch["completion_mask"][i, t] == 1:
                assert t >= 1  # a completion never starts at position 0: the prompt comes first
                token = batch["input_ids"][i, t].item()
                total += torch.log_softmax(logits[i, t - shift], dim=-1)[token].item()
        out.append(total)
    return out


def test_batch_layout_chosen_first_then_rejected(dpo, tokenizer):
    trainer, batch = dpo
    n = len(PAIRS)
    assert batch["input_ids"].shape[0] == 2 * n
    for i, pair in enumerate(PAIRS):
        for row, key in ((i, "chosen"), (n + i, "rejected")):
            ids = batch["input_ids"][row]
            comp = [t.item() for t, m in zip(ids, batch["completion_mask"][row]) if m == 1]
            assert tokenizer.decode(comp) == pair[key] + END_OF_TURN
            prompt = [t.item() for t, m, a in zip(ids, batch["completion_mask"][row], batch["attention_mask"][row])
                      if m == 0 and a == 1]
            expected_prompt = tokenizer.apply_chat_template([{"role": "user", "content": pair["prompt"]}],
                                                            add_generation_prompt=True, tokenize=True,
                                                            return_dict=True)["input_ids"]
            assert prompt == expected_prompt
            # completion tokens sit right after the prompt, padding only at the end
            m = batch["completion_mask"][row].tolist()
            a = batch["attention_mask"][row].tolist()
            assert m == [0] * len(prompt) + [1] * len(comp) + [0] * (len(m) - len(prompt) - len(comp))
            assert a == [1] * (len(prompt) + len(comp)) + [0] * (len(a) - len(prompt) - len(comp))


def test_reference_logps_use_the_previous_positions_logits(dpo):
    trainer, batch = dpo
    model = trainer.model
    model.eval()
    chosen, rejected = trainer.compute_ref_log_probs(model, batch)
    n = len(PAIRS)
    assert chosen.shape == (n,) and rejected.shape == (n,)
    got = chosen.tolist() + rejected.tolist()

    correct = manual_logps(model, batch, shift=1)
    assert got == pytest.approx(correct, abs=1e-4)
    # every log-prob is a real sum over several ~uniform tokens: about -log(vocab) each
    counts = batch["completion_mask"].sum(dim=1).tolist()
    for value, count in zip(correct, counts):
        assert -1.5 * count * math.log(49152) < value < -0.5 * count * math.log(49152)

    off_by_one = manual_logps(model, batch, shift=0)
    for g, wrong in zip(got, off_by_one):
        assert abs(g - wrong) > 0.5, "scored token t with the logits at t"


def test_initial_dpo_loss_is_log2(dpo):
    """Policy == reference at step 0: every margin is 0, so the sigmoid loss is exactly log 2."""
    trainer, batch = dpo
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)


def test_cpu_batches_are_padded_to_a_multiple_and_the_pads_change_no_log_prob(dpo):
    """Regression (see test_sft_labels): DPO batches on a CPU are padded to a multiple of 64 tokens, and the
    sequence log-probabilities are those of the unpadded batch."""
    trainer, batch = dpo
    ds = trainer.train_dataset
    tight = dataclasses.replace(trainer.data_collator, pad_to_multiple_of=None)([ds[i] for i in range(len(ds))])
    assert batch["input_ids"].shape[1] % 64 == 0 and tight["input_ids"].shape[1] < batch["input_ids"].shape[1]
    trainer.model.eval()
    got = [torch.cat(trainer.compute_ref_log_probs(trainer.model, b)).tolist() for b in (batch, tight)]
    assert got[0] == pytest.approx(got[1], abs=1e-4)
