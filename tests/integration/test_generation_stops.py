"""The transformers backend's continuous batching and stop strings (tiny random Llama, fp32): rows that end leave
the batch and waiting requests take their places, and still greedy decoding gives the tokens of a plain
generate() on each unpadded prompt alone; seeded samples do not depend on the batch; a stop string ends a text
right after it; the generate() path of models with a cache of their own stops the same way."""

from __future__ import annotations

import pytest
import torch

from integration_helpers import save_tiny_llama

PROMPTS = ["Hi", "Write a long poem about the sea and the sky and the stars and the moon, please",
           "Name three colors.", "Why is the sky blue?", "Why?", "a b c d e f g", "Tell me a story about a cat"]


@pytest.fixture(scope="module")
def untied_model_dir(tmp_path_factory, tokenizer):
    """Untied output layer: greedy text differs per request (the tied tiny model repeats the last prompt token)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-untied"), tokenizer, tie_word_embeddings=False)


def generator(model_dir, **kwargs):
    from selfreward.backends.hf import HFGenerator

    gen = HFGenerator(str(model_dir), dtype=torch.float32, **kwargs)
    # The plain text, without the chat template's closing tokens: those are the same for every request and would
    # decide the tiny model's greedy text, so that each request gets a different one.
    gen._encode = lambda messages: gen.tokenizer(messages[0]["content"], add_special_tokens=False)["input_ids"]
    return gen


def requests(prompts=PROMPTS):
    return [[{"role": "user", "content": p}] for p in prompts]


def alone(gen, request, max_new_tokens, eos=None):
    """generate() on the unpadded prompt alone: (new token ids up to and without the end, ended)."""
    ids = torch.tensor([gen._encode(request)])
    out = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=gen.tokenizer.pad_token_id,
                             eos_token_id=eos if eos is not None else gen.model.generation_config.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    if eos is not None and eos in new:
        return new[:new.index(eos)], True
    return new, False


def test_greedy_rows_leave_and_enter_and_still_equal_generate_alone(untied_model_dir):
    """batch_size 2 for 7 requests: rows end at different steps (a token the tiny model writes stands in for the
    end of sequence), waiting requests join a batch whose cache is longer or shorter than theirs, and columns
    nobody uses are dropped; every text is still generate()'s on its prompt alone."""
    from selfreward.backends import Sampling

    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=10)
    for reuse in (True, False):
        gen = generator(untied_model_dir, batch_size=2, reuse_prefix=reuse)
        try:
            plain = [alone(gen, r, 10)[0] for r in requests()]
            # the end of sequence: a token written early by some requests and late or never by others
            counts = {}
            for ids in plain:
                for k, tok in enumerate(ids):
                    counts.setdefault(tok, set()).add(k)
            eos = max(counts, key=lambda tok: (len(counts[tok]), -min(counts[tok])))
            gen._eos_ids = [eos]
            joins = []

            def recording(prefix, batch, joins=joins, real=gen._start_rows):
                joins.append(len(batch))
                return real(prefix, batch)

            gen._start_rows = recording
            got = gen.complete(requests(), greedy)
            expected = [alone(gen, r, 10, eos) for r in requests()]
        finally:
            gen.close()
        assert [c[0].text for c in got] == [gen.tokenizer.decode(ids, skip_special_tokens=True).strip()
                                            for ids, _ in expected]
        assert [c[0].finished for c in got] == [ended for _, ended in expected]
        assert len({len(ids) for ids, _ in expected}) > 2, "rows must end at different steps"
        assert sum(joins) == len(PROMPTS) and max(joins) <= 2 and len(joins) > 3


def test_sampled_completions_do_not_depend_on_the_batch(untied_model_dir):
    """Each row draws from its own generator, seeded by (seed, request, sample): the same samples with 1, 3 or 12
    rows per batch, with and without the shared prefix; another seed gives others; n samples differ."""
    from selfreward.backends import Sampling

    s = Sampling(n=3, temperature=0.8, top_p=0.9, max_new_tokens=8, seed=7)
    outs = []
    for batch_size, reuse in ((12, True), (3, True), (1, False)):
        gen = generator(untied_model_dir, batch_size=batch_size, reuse_prefix=reuse)
        try:
            outs.append(gen.generate(requests(), s))
            if batch_size == 12:
                again = gen.generate(requests(), s)
                other = gen.generate(requests(), Sampling(n=3, temperature=0.8, top_p=0.9, max_new_tokens=8, seed=8))
        finally:
            gen.close()
    assert outs[0] == outs[1] == outs[2] == again
    assert other != outs[0]
    assert all(len(set(o)) == 3 for o in outs[0])


def test_top_p_keeps_the_tokens_generate_keeps():
    """_choose's nucleus is generate()'s (TopPLogitsWarper after the temperature), looked for among the most likely
    tokens first or, when they hold too little, over the whole vocabulary; a draw never leaves it."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from selfreward.backends import Sampling
    from selfreward.backends.hf import HFGenerator, _Row
    from selfreward.backends.sampler import NUCLEUS_FIRST

    torch.manual_seed(0)
    peaked = torch.randn(3, 5000) * 15  # a few tokens hold most of the mass: the nucleus lies in the first ones
    flat = torch.randn(3, 5000) * 0.1  # the nucleus is most of the vocabulary
    for logits in (peaked, flat, torch.cat([peaked, flat])):
        for temperature, top_p in ((0.7, 0.9), (1.0, 0.5), (1.3, 0.99)):
            scores = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
            allowed = [set(torch.isfinite(row).nonzero().squeeze(1).tolist()) for row in scores]
            if logits is peaked:
                assert max(len(a) for a in allowed) < NUCLEUS_FIRST
            rows = [_Row(0, 0, torch.Generator().manual_seed(i)) for i in range(len(logits))]
            sampling = Sampling(temperature=temperature, top_p=top_p)
            drawn = [HFGenerator._choose(logits, rows, sampling) for _ in range(200)]
            for i, a in enumerate(allowed):
                assert {d[i] for d in drawn} <= a
            if logits is peaked and top_p == 0.9:  # every token of a small nucleus shows up in 200 draws
                assert all({d[i] for d in drawn} == a for i, a in enumerate(allowed) if len(a) <= 3)


def test_the_draw_among_the_likeliest_tokens_is_the_whole_vocabularys_draw(monkeypatch):
    """The sampler looks for each row's nucleus among the likeliest tokens of the slices with the highest peaks,
    then among the whole vocabulary's likeliest, then in the whole vocabulary sorted; wherever a row's nucleus is
    found, the token drawn is the one the inversion over the whole vocabulary (the zeros of the tokens left out
    included) gives for the same generator state, ties at the threshold included. Every place is used."""
    from selfreward.backends import Sampling, sampler
    from selfreward.backends.hf import HFGenerator, _Row

    drawn_in = {}
    places = ("_in_likeliest_slices", "_in_vocabulary", "_sorted")
    def tagged(name):
        real = getattr(sampler, name)

        def find(probs):
            found = real(probs)
            if found is not None:
                drawn_in["now"] = name
            return found
        return find

    for name in places:
        monkeypatch.setattr(sampler, name, tagged(name))
    draw_in = sampler._draw_in

    def counted(*args):
        tokens, ok = draw_in(*args)
        drawn_in[drawn_in["now"]] = drawn_in.get(drawn_in["now"], 0) + len(tokens)
        return tokens, ok

    monkeypatch.setattr(sampler, "_draw_in", counted)

    def whole_vocabulary(logits, rows, sampling):
        probs = (logits.float() / sampling.temperature).softmax(-1)
        top = probs.sort(dim=-1, descending=True).values
        kept = (top.cumsum(-1) - top < sampling.top_p).sum(-1, keepdim=True)
        cdf = probs.masked_fill(probs < top.gather(1, kept - 1), 0.0).double().cumsum(-1)
        draws = torch.tensor([torch.rand((), dtype=torch.float64, generator=r.rng).item() for r in rows],
                             dtype=torch.float64) * cdf[:, -1]
        return torch.searchsorted(cdf, draws[:, None], right=True).clamp(max=cdf.shape[1] - 1)[:, 0].tolist()

    g = torch.Generator().manual_seed(0)
    checked = 0
    for trial in range(40):
        logits = torch.randn(16, 49152, generator=g) * (1 + trial % 4)
        logits[:, : 5 + trial] += 10  # a peaked distribution, as a trained model's
        if trial % 5 == 0:  # more tokens tied with the likeliest than NUCLEUS_FIRST: the whole vocabulary is read
            logits[:, 1000:1300] = logits[:, 0:1]
        if trial % 5 == 1:  # likely tokens spread over more slices than the sampler looks at first
            logits[:8, ::1500] += 12
        logits = logits.to(torch.bfloat16)  # the model's dtype: many exact ties
        for temperature, top_p in ((0.7, 0.9), (1.0, 0.5), (1.3, 0.99)):
            sampling = Sampling(temperature=temperature, top_p=top_p)
            seeds = [trial * 1000 + i for i in range(16)]
            fast = HFGenerator._choose(logits, [_Row(0, 0, torch.Generator().manual_seed(s)) for s in seeds], sampling)
            full = whole_vocabulary(logits, [_Row(0, 0, torch.Generator().manual_seed(s)) for s in seeds], sampling)
            assert fast == full
            checked += len(seeds)
    assert checked == 40 * 3 * 16
    assert sum(drawn_in.get(p, 0) for p in places) == checked and all(drawn_in.get(p) for p in places), drawn_in


def test_a_stop_string_ends_the_text_right_after_it(untied_model_dir):
    from selfreward.backends import Completion, Sampling

    gen = generator(untied_model_dir, batch_size=4)
    try:
        full = gen.complete(requests(), Sampling(n=1, max_new_tokens=12))
        words = [c[0].text.split() for c in full]
        # a stop string from the middle of request 1's text; a word of request 3's; one nobody writes
        stop = (" ".join(words[1][2:4]), words[3][5], "never written here")
        got = gen.complete(requests(), Sampling(n=1, max_new_tokens=12, stop=stop))
    finally:
        gen.close()
    for before, after in zip(full, got):
        text = before[0].text
        ends = [text.index(s) + len(s) for s in stop if s in text]
        if ends:
            assert after[0] == Completion(text[:min(ends)].strip(), True)
        else:
            assert after[0] == before[0]
    assert got[1][0].text.endswith(stop[0]) and got[1][0].finished and not full[1][0].finished


def test_generate_path_of_a_model_with_its_own_cache_stops_the_same_way(untied_model_dir):
    """Models whose cache is not plain full attention run generate() with stop_strings: the same greedy texts and
    the same stops as continuous batching."""
    from selfreward.backends import Sampling

    gen = generator(untied_model_dir, batch_size=3)
    try:
        ours = gen.complete(requests(), Sampling(n=1, max_new_tokens=12))
        stop = (ours[1][0].text.split()[3], ours[4][0].text.split()[1])
        ours_stopped = gen.complete(requests(), Sampling(n=1, max_new_tokens=12, stop=stop))
        gen._own_cache = gen.reuse_prefix = False
        theirs = gen.complete(requests(), Sampling(n=1, max_new_tokens=12))
        theirs_stopped = gen.complete(requests(), Sampling(n=1, max_new_tokens=12, stop=stop))
    finally:
        gen.close()
    assert theirs == ours
    assert theirs_stopped == ours_stopped
    assert ours_stopped != ours


def test_the_prefix_cache_goes_through_the_cache_argument(untied_model_dir, recwarn):
    """transformers 5.24 renamed past_key_values to cache (the old name goes in 5.40): no deprecation warning."""
    from selfreward.backends import Sampling

    gen = generator(untied_model_dir, batch_size=4)
    try:
        gen.complete(requests(), Sampling(n=2, temperature=0.7, max_new_tokens=4))
        gen.option_probs(requests(), ["Score:"] * len(PROMPTS), ["1", "2"])
    finally:
        gen.close()
    assert not [w for w in recwarn if "past_key_values" in str(w.message)]
