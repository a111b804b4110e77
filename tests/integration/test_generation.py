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
    """The backend, recording each group of requests it admits to the running batch: their own token ids, and
    how many rows (samples) each decodes."""
    from selfreward.backends.hf import HFGenerator

    gen = HFGenerator(str(model_dir), dtype=torch.float32, batch_size=batch_size)
    calls = []
    original = gen._start_rows

    def recording(prefix, batch):
        calls.append({"units": [list(u) for u in batch], "rows": [u.rows for u in batch]})
        return original(prefix, batch)

    gen._start_rows = recording
    return gen, calls


def test_shapes_and_sorted_batches(tiny_model_dir):
    from selfreward.backends import Sampling

    gen, calls = make(tiny_model_dir, batch_size=6)  # n=3 -> 2 requests per batch
    try:
        out = gen.complete(REQUESTS, Sampling(n=3, temperature=0.7, top_p=0.9, max_new_tokens=8, seed=1))
        prefix = len(gen._shared_prefix([gen._encode(r) for r in REQUESTS]).ids)
    finally:
        gen.close()
    assert len(out) == len(REQUESTS)
    assert all(isinstance(o, list) and len(o) == 3 and all(isinstance(c.text, str) for c in o) for o in out)
    # a random model at temperature 0.7 never repeats itself: the 3 samples of a request are distinct
    assert all(len({c.text for c in o}) == 3 for o in out)
    # requests joined the batch longest first, 2 at a time (each decodes 3 rows after its prompt was read once);
    # a random model never writes the end of sequence, so rows end together at max_new_tokens and the next two join
    lengths = sorted((len(gen._encode(r)) for r in REQUESTS), reverse=True)
    assert [len(c["units"]) for c in calls] == [2, 2, 1]
    assert all(rows == 3 for c in calls for rows in c["rows"])
    assert [len(u) + prefix for c in calls for u in c["units"]] == lengths
    assert all(not c.finished and c.text for o in out for c in o)  # cut at max_new_tokens
    assert all(c.text.strip() == c.text for o in out for c in o)  # texts come back stripped


def test_greedy_results_in_request_order_and_same_alone_or_batched(untied_model_dir):
    from selfreward.backends import Sampling

    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=10, seed=0)
    gen, calls = make(untied_model_dir, batch_size=8)
    try:
        batched = gen.generate(REQUESTS, greedy)
        (batch_call,) = calls
        alone = [gen.generate([r], greedy)[0] for r in REQUESTS]
        # order of the rows in the batch: longest prompt first
        order = sorted(range(len(REQUESTS)), key=lambda i: -len(gen._encode(REQUESTS[i])))
        prefix = len(gen._shared_prefix([gen._encode(r) for r in REQUESTS]).ids)
    finally:
        gen.close()
    assert len({a[0] for a in alone}) == len(REQUESTS), "greedy outputs must differ to prove the order"
    assert batched == alone, "left padding or the batch changed the greedy tokens"
    assert [len(u) + prefix for u in batch_call["units"]] == [len(gen._encode(REQUESTS[i])) for i in order]
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
    assert [len(c["units"]) for c in calls] == [2] * 7 + [1]
    assert all(rows == 1 for c in calls for rows in c["rows"])


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
        real = gen._start_rows
        sizes = []

        def flaky(prefix, batch):
            sizes.append(len(batch))
            if len(batch) > 2:
                raise torch.OutOfMemoryError("simulated")
            return real(prefix, batch)

        monkeypatch.setattr(gen, "_start_rows", flaky)
        got = gen.generate(REQUESTS, greedy)
    finally:
        gen.close()
    assert got == expected
    # 5 requests fit in 8: OOM; half of the 5 tried, 2 at a time: 2 + 2 + 1
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

    from selfreward.backends import Sampling, open_generator
    from selfreward.config import load_config
    from selfreward.errors import UserError

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
