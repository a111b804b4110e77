"""The transformers backend's speed paths change no result (tiny random Llama, fp32): the shared prompt prefix
computed once, the prompt read once for n samples, batches within a memory budget, out-of-memory on the CPU."""

from __future__ import annotations

import pytest
import torch

from integration_helpers import save_tiny_llama

ITEMS = [
    ("What is 2+2?", "4"),
    ("Write a haiku about autumn leaves falling in a quiet park at dusk.", "Leaves drift down slowly\nred and gold"),
    ("Name a color.", "Blue, the color of a clear sky on a summer afternoon, which many people find calming."),
    ("Why?", "Because."),
]


@pytest.fixture(scope="module")
def untied_model_dir(tmp_path_factory, tokenizer):
    """Untied output layer: greedy text differs per request (the tied tiny model repeats the last prompt token)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-untied"), tokenizer, tie_word_embeddings=False)


def generator(model_dir, **kwargs):
    from selfreward.backends.hf import HFGenerator

    return HFGenerator(str(model_dir), dtype=torch.float32, **kwargs)


def judge_requests(items=ITEMS):
    from selfreward.judges import templates
    from selfreward.judges.rubric import requests_for

    return requests_for(templates.load("rubric"), items)


def test_the_shared_prefix_is_the_chat_header_and_rubric(untied_model_dir, tokenizer):
    gen = generator(untied_model_dir)
    try:
        encoded = [gen._encode(r) for r in judge_requests()]
        prefix = gen._shared_prefix(encoded)
    finally:
        gen.close()
    text = tokenizer.decode(prefix.ids)
    # everything before the first instruction: system turn, user header, the whole rubric and its "<question>" tag
    assert text.startswith("<|im_start|>system\n") and text.rstrip().endswith("<question>")
    assert "Add a 5th point" in text
    assert all(ids[:len(prefix.ids)] == prefix.ids for ids in encoded)
    # one token later the requests differ
    assert len({ids[len(prefix.ids)] for ids in encoded}) > 1
    assert prefix.cache.get_seq_length() == len(prefix.ids) and len(prefix.ids) > 150


def rubric_then(tails: list[str]):
    """The rubric, then texts that differ at the very end (the tiny model's greedy text follows the last tokens,
    and every judge prompt ends with the same instructions)."""
    from selfreward.judges import templates

    rubric = templates.load("rubric").split("{instruction}")[0]
    return [[{"role": "user", "content": rubric + tail}] for tail in tails]


def test_greedy_equals_one_unpadded_request_at_a_time(untied_model_dir):
    """Batched, with the rubric's cache reused and pads placed after it, the tokens are those of a plain
    generate() on each unpadded prompt alone."""
    from selfreward.backends import Sampling

    requests = rubric_then(["Hi", "Name three colors", "Why is the sky blue",
                            "Write a poem about the sea and the stars and the moon in rhyming couplets"])
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=12)
    gen = generator(untied_model_dir, batch_size=8)
    # Without the chat template's closing tokens, which are the same for every request and would decide the tiny
    # model's greedy text, so that each request gets a different one.
    gen._encode = lambda messages: gen.tokenizer(messages[0]["content"], add_special_tokens=False)["input_ids"]
    try:
        assert len(gen._shared_prefix([gen._encode(r) for r in requests]).ids) > 150
        batched = gen.generate(requests, greedy)
        alone = []
        for r in requests:
            ids = torch.tensor([gen._encode(r)])
            out = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                     do_sample=False, pad_token_id=gen.tokenizer.pad_token_id)
            alone.append(gen.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    finally:
        gen.close()
    assert len(set(alone)) == len(requests), "greedy outputs must differ to prove the order"
    assert [b[0] for b in batched] == alone


def test_reuse_on_and_off_give_the_same_judge_scores(untied_model_dir):
    """Expected mode: the same greedy judgment texts and digit probabilities with and without the rubric's cache."""
    from selfreward.config import JudgeConfig
    from selfreward.judges import templates
    from selfreward.judges.rubric import DIGITS, requests_for, score_prefix
    from selfreward.judges.scorers import score_items

    template = templates.load("rubric")
    c = JudgeConfig(mode="expected", max_new_tokens=10)
    rows, probs = {}, {}
    for reuse in (True, False):
        gen = generator(untied_model_dir, batch_size=8, reuse_prefix=reuse)
        try:
            rows[reuse] = score_items(gen, template, ITEMS, c, seed=0)
            # the raw texts of a random model hold no "Score:", so feed a fixed one to see every digit's probability
            prefixes = [score_prefix(r["raw"][0]) for r in rows[reuse]]
            probs[reuse] = gen.option_probs(requests_for(template, ITEMS), prefixes, DIGITS)
        finally:
            gen.close()
    assert [r["raw"] for r in rows[True]] == [r["raw"] for r in rows[False]]
    assert [r["digit_mass"] for r in rows[True]] == pytest.approx([r["digit_mass"] for r in rows[False]], rel=1e-5)
    for a, b in zip(probs[True], probs[False]):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-9)
    assert all(a != pytest.approx(b, rel=1e-3) for i, a in enumerate(probs[True]) for b in probs[True][i + 1:])


def test_n_samples_from_one_prefill(untied_model_dir, monkeypatch):
    """n=3 samples per request: the prompt's own tokens go through the model once per request, not once per sample;
    and with batch_size=1 (one sequence per pass) every sample re-reads its whole prompt."""
    from selfreward.backends import Sampling

    requests = judge_requests()
    sampling = Sampling(n=3, temperature=0.7, top_p=0.9, max_new_tokens=4, seed=5)
    prefilled = {}
    for batch_size, reuse in ((12, True), (1, False)):
        gen = generator(untied_model_dir, batch_size=batch_size, reuse_prefix=reuse)
        seen = []
        original = gen.model.forward

        def counting(*args, seen=seen, original=original, **kwargs):
            ids = kwargs["input_ids"]
            if ids.shape[1] > 1:  # prefill passes; decoding passes feed one token per row
                seen.append(ids.shape[0] * ids.shape[1])
            return original(*args, **kwargs)

        monkeypatch.setattr(gen.model, "forward", counting)
        try:
            out = gen.generate(requests, sampling)
            prompt_tokens = [len(gen._encode(r)) for r in requests]
        finally:
            gen.close()
        assert [len(o) for o in out] == [3, 3, 3, 3]
        prefilled[batch_size] = (sum(seen), prompt_tokens)
    (fast, lengths), (naive, _) = prefilled[12], prefilled[1]
    # 12 sequences, each reading its full prompt alone (generate() feeds the last prompt token with the decoding)
    assert naive == 3 * (sum(lengths) - len(requests))
    # fast: the shared prefix once, then per request its own tokens padded to the longest, less the last token
    # (generate() feeds that one); all four requests fit one batch
    gen = generator(untied_model_dir)
    try:
        p = len(gen._shared_prefix([gen._encode(r) for r in requests]).ids)
    finally:
        gen.close()
    width = max(lengths) - p
    assert fast == p + len(requests) * (width - 1)
    assert fast < naive / 5


def test_memory_budget_limits_the_batch(untied_model_dir):
    """_fit's estimate for the tiny model, by hand: 2 layers x 2 (k, v) x 2 kv-heads x 8 dims x 4 bytes = 256 bytes
    of cache per token; prefill 4*32 + 3*64 = 320 values per token, 4 heads x width x keys fp32 attention weights,
    and two fp32 rows of 49152 logits per sequence."""
    from selfreward.backends import Sampling

    gen = generator(untied_model_dir, batch_size=16, memory_budget=10**9)
    try:
        fit = gen._fit(prefix_len=100, rows=2, new_tokens=20)
        width = 50
        per_request = 2 * 256 * (100 + 50 + 20) + 50 * 320 * 4 + 4 * 50 * 150 * 4 + 2 * 2 * 49152 * 4
        assert fit(width) == 10**9 // per_request
        assert fit(10) > fit(50) > fit(400)

        requests = judge_requests()
        encoded = [gen._encode(r) for r in requests]
        p = len(gen._shared_prefix(encoded).ids)
        longest = max(len(ids) for ids in encoded) - p
        # a budget that holds two requests of the longest length, and not three
        gen.memory_budget = 1
        one = gen._fit(p, 1, 6)(longest)
        assert one == 0
        unit = 256 * (p + longest + 6) + longest * 320 * 4 + 4 * longest * (p + longest) * 4 + 2 * 49152 * 4
        gen.memory_budget = 2 * unit + unit // 2
        sizes = []
        real = gen._start_rows

        def recording(prefix, batch):
            sizes.append(len(batch))
            return real(prefix, batch)

        gen._start_rows = recording
        out = gen.generate(requests, Sampling(n=1, temperature=0.0, max_new_tokens=6))
        gen.memory_budget = 1  # under any budget a batch keeps one request
        sizes_one = []
        gen._start_rows = lambda prefix, batch: sizes_one.append(len(batch)) or real(prefix, batch)
        again = gen.generate(requests, Sampling(n=1, temperature=0.0, max_new_tokens=6))
    finally:
        gen.close()
    assert sizes[0] == 2 and sum(sizes) == 4
    assert sizes_one == [1, 1, 1, 1]
    assert out == again


def test_rows_per_call():
    from selfreward.backends.hf import rows_per_call

    assert [rows_per_call(4, b) for b in (1, 2, 3, 4, 16)] == [1, 2, 2, 4, 4]
    assert [rows_per_call(5, b) for b in (1, 2, 4, 5)] == [1, 1, 1, 5]
    assert rows_per_call(1, 32) == 1 and rows_per_call(6, 4) == 3


def test_cpu_allocation_failure_halves_the_batch():
    from selfreward.backends.hf import _longest_first

    sizes = []

    def run(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return [len(x) for x in batch]

    assert _longest_first([[1], [1, 2, 3], [1, 2]], 4, run, "t") == [1, 3, 2]
    assert sizes == [3, 1, 1, 1]  # all 3 in one batch, then half of 3

    sizes.clear()
    assert _longest_first([[0] * i for i in range(10)], 4, lambda b: sizes.append(len(b)) or b, "t") == \
        [[0] * i for i in range(10)]
    assert sizes == [4, 3, 3]  # as few batches as 4 per batch allows, of even size

    def broken(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        _longest_first([[1], [2]], 2, broken, "t")
