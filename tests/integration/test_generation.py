"""The transformers backend on the tiny model: shapes, order, greedy batch invariance, n above the batch size."""

from __future__ import annotations

import pytest
import torch

from integration_helpers import save_tiny_llama

# Different lengths, deliberately not sorted: the backend runs longest first and must put results back in order.
REQUESTS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Write a long poem about the sea and the sky and the stars and the moon, please, "
                                 "in rhyming couplets, with a refrain after every fourth line."}],
    [{"role": "user", "content": "Name three colors."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Why?"}],
]


@pytest.fixture(scope="module")
def untied_model_dir(tmp_path_factory, tokenizer):
    """The tiny model with an untied output layer. The tied one's greedy continuation just repeats the last prompt
    token (the hidden state is closest to its own embedding), so every request would give the same text and a
    greedy comparison would prove nothing; the untied one writes a different text for each request."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-untied"), tokenizer, tie_word_embeddings=False)


def make(model_dir, batch_size):
    from selfreward.backends.hf import HFGenerator

    gen = HFGenerator(str(model_dir), dtype=torch.float32, batch_size=batch_size)
    calls = []
    original = gen.model.generate

    def recording(**kwargs):
        out = original(**kwargs)
        width = kwargs["input_ids"].shape[1]
        calls.append({"input_ids": kwargs["input_ids"], "new_ids": out[:, width:].tolist()})
        return out

    gen.model.generate = recording
    return gen, calls


def test_shapes_and_sorted_batches(tiny_model_dir):
    from selfreward.backends import Sampling

    gen, calls = make(tiny_model_dir, batch_size=6)  # n=3 -> 2 requests per batch -> 3 batches
    try:
        out = gen.generate(REQUESTS, Sampling(n=3, temperature=0.7, top_p=0.9, max_new_tokens=8, seed=1))
    finally:
        gen.close()
    assert len(out) == len(REQUESTS)
    assert all(isinstance(o, list) and len(o) == 3 and all(isinstance(s, str) for s in o) for o in out)
    # a random model at temperature 0.7 never repeats itself: the 3 samples of a request are distinct
    assert all(len(set(o)) == 3 for o in out)
    # batches were built longest first, each holding 2 requests x 3 samples (each request's row repeated once per
    # sample after its prompt was read once)
    lengths = sorted((len(gen._encode(r)) for r in REQUESTS), reverse=True)
    assert [c["input_ids"].shape[0] for c in calls] == [6, 6, 3]
    assert [len(c["new_ids"]) for c in calls] == [6, 6, 3]
    widths = [c["input_ids"].shape[1] for c in calls]
    assert widths == [lengths[0], lengths[2], lengths[4]]
    # max_new_tokens reaches generate(); a random model never emits EOS, so every batch runs the full 8 tokens
    assert all(len(ids) == 8 for c in calls for ids in c["new_ids"])
    assert all(s.strip() == s for o in out for s in o)  # texts come back stripped


def test_greedy_results_in_request_order_and_same_alone_or_batched(untied_model_dir):
    from selfreward.backends import Sampling

    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=10, seed=0)
    gen, calls = make(untied_model_dir, batch_size=8)
    try:
        batched = gen.generate(REQUESTS, greedy)
        (batch_call,) = calls
        alone_text, alone_ids = [], []
        for r in REQUESTS:
            alone_text.append(gen.generate([r], greedy))
            alone_ids.append(calls[-1]["new_ids"][0])
        # order of the rows in the padded batch: longest prompt first
        order = sorted(range(len(REQUESTS)), key=lambda i: -len(gen._encode(REQUESTS[i])))
        batch_ids = {i: batch_call["new_ids"][row] for row, i in enumerate(order)}
    finally:
        gen.close()
    assert len({tuple(ids) for ids in alone_ids}) == len(REQUESTS), "greedy outputs must differ to prove the order"
    for i in range(len(REQUESTS)):
        assert batch_ids[i] == alone_ids[i], f"request {i}: left padding changed the greedy tokens"
        assert batched[i] == alone_text[i][0]
    assert order != list(range(len(REQUESTS)))  # the sort really permuted the requests


def test_batch_size_below_n(tiny_model_dir):
    from selfreward.backends import Sampling

    # n=5 > batch_size=2: 5 rounds of one sample per request (1 is the largest divisor of 5 within 2), two
    # requests per forward pass, so no pass exceeds batch_size sequences
    gen, calls = make(tiny_model_dir, batch_size=2)
    try:
        out = gen.generate(REQUESTS[:3], Sampling(n=5, temperature=0.7, top_p=0.9, max_new_tokens=6, seed=3))
    finally:
        gen.close()
    assert [len(o) for o in out] == [5, 5, 5]
    assert all(len(set(o)) == 5 for o in out)
    assert [c["input_ids"].shape[0] for c in calls] == [2] * 7 + [1]
    assert [len(c["new_ids"]) for c in calls] == [2] * 7 + [1]


def test_same_seed_same_samples(tiny_model_dir):
    """Resume relies on this: re-running a stage with the same seed reproduces its samples."""
    from selfreward.backends import Sampling

    s = Sampling(n=2, temperature=0.7, top_p=0.9, max_new_tokens=6, seed=11)
    gen, _ = make(tiny_model_dir, batch_size=4)
    try:
        first = gen.generate(REQUESTS[:2], s)
        second = gen.generate(REQUESTS[:2], s)
        other = gen.generate(REQUESTS[:2], Sampling(n=2, temperature=0.7, top_p=0.9, max_new_tokens=6, seed=12))
    finally:
        gen.close()
    assert first == second
    assert first != other


def test_out_of_memory_halves_the_batch_and_keeps_the_order(untied_model_dir, monkeypatch):
    from selfreward.backends import Sampling

    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=6, seed=0)
    gen, _ = make(untied_model_dir, batch_size=8)
    try:
        expected = gen.generate(REQUESTS, greedy)
        real = gen._generate_batch
        sizes = []

        def flaky(prefix, batch, n, sampling):
            sizes.append(len(batch))
            if len(batch) > 2:
                raise torch.OutOfMemoryError("simulated")
            return real(prefix, batch, n, sampling)

        monkeypatch.setattr(gen, "_generate_batch", flaky)
        got = gen.generate(REQUESTS, greedy)
    finally:
        gen.close()
    assert got == expected
    # 5 requests fit in 8: OOM; half of the 5 tried, 2 per batch: 2 + 2 + 1
    assert sizes == [5, 2, 2, 1]


def test_greedy_with_several_completions(tiny_model_dir):
    from selfreward.backends import Sampling

    gen, _ = make(tiny_model_dir, batch_size=8)
    try:
        out = gen.generate(REQUESTS[:2], Sampling(n=3, temperature=0.0, max_new_tokens=4, seed=0))
        single = gen.generate(REQUESTS[:2], Sampling(n=1, temperature=0.0, max_new_tokens=4, seed=0))
    finally:
        gen.close()
    # greedy is deterministic: n identical completions, the same as a single greedy completion
    assert out == [[s[0]] * 3 for s in single]


def test_model_without_chat_template_uses_model_chat_template(tiny_model_dir, tmp_path):
    """A base model has no chat template: generation stages take model.chat_template, as training does."""
    import shutil

    from selfreward.backends import Sampling
    from selfreward.config import load_config
    from selfreward.errors import UserError
    from selfreward.stages import open_generator

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    for name in ("chat_template.jinja", "chat_template.json"):
        (base / name).unlink(missing_ok=True)
    config = base / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"chat_template"', '"_dropped_chat_template"'))
    with pytest.raises(UserError, match="has no chat template"):
        open_generator(load_config(None, ["generation.backend=transformers"]), str(base))
    gen = open_generator(load_config(None, ["generation.backend=transformers", "model.chat_template=builtin-llama2",
                                            "model.dtype=float32"]), str(base))
    try:
        assert "[INST]" in gen._prompt_text([{"role": "user", "content": "Hi"}])
        (out,) = gen.generate([[{"role": "user", "content": "Hi"}]], Sampling(n=1, max_new_tokens=3))
        assert len(out) == 1
    finally:
        gen.close()
