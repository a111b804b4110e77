"""What HFGenerator does to a decoding step's cost on a CPU without changing what it decodes (tiny random Llama):
each row's pads before its own columns, attention per group of rows on the columns the group uses, and bf16
linear layers with weights packed once for oneDNN."""

from __future__ import annotations

import pytest
import torch

from integration_helpers import save_tiny_llama

PROMPTS = ["Hi", "Write a long poem about the sea and the sky and the stars and the moon, please and thank you",
           "Name three colors.", "Why?", "a b c d e f g h i j k l m n o p", "Tell me a story about a cat"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-layout"), tokenizer, tie_word_embeddings=False)


def generator(model_dir, dtype=torch.float32, **kwargs):
    from selfreward.backends.hf import HFGenerator

    gen = HFGenerator(str(model_dir), dtype=dtype, **kwargs)
    gen._encode = lambda messages: gen.tokenizer(messages[0]["content"], add_special_tokens=False)["input_ids"]
    return gen


def requests():
    return [[{"role": "user", "content": p}] for p in PROMPTS]


def test_grouped_attention_decodes_what_one_group_decodes(model_dir, monkeypatch):
    """Rows split into as many attention groups as their starts allow (a call costing nothing), or never split (a
    call costing more than any pad): the same greedy texts, the same seeded samples, and greedy is still a plain
    generate() on each prompt alone."""
    from selfreward.backends import Sampling, row_groups

    plans = []
    real_plan = row_groups.plan
    monkeypatch.setattr(row_groups, "plan", lambda *a, **k: plans.append(real_plan(*a, **k)) or plans[-1])
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=12)
    sampled = Sampling(n=3, temperature=0.9, top_p=0.95, max_new_tokens=12, seed=3)
    got = {}
    gen = generator(model_dir, batch_size=32)
    try:
        assert gen._grouped and gen.model.config._attn_implementation == "selfreward_row_groups"
        for call_cost in (0, 10**9):
            monkeypatch.setattr(row_groups, "CALL_COST", call_cost)
            got[call_cost] = (gen.generate(requests(), greedy), gen.generate(requests(), sampled))
        alone = []
        for r in requests():
            ids = torch.tensor([gen._encode(r)])
            out = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                     min_new_tokens=12, do_sample=False, pad_token_id=gen.tokenizer.pad_token_id)
            alone.append(gen.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    finally:
        gen.close()
    assert got[0] == got[10**9]
    assert [texts[0] for texts in got[0][0]] == alone
    assert max(len(p) for p in plans) > 2, "the free calls must split the rows"
    assert all(len(p) == 1 for p in plans[-2:]), "the dear calls must not"


def test_each_rows_pads_come_before_its_own_columns(model_dir):
    from selfreward.backends.hf import _Unit

    gen = generator(model_dir, batch_size=32)
    try:
        encoded = [gen._encode(r) for r in requests()]
        prefix = gen._shared_prefix(encoded)
        units = [_Unit(ids[len(prefix.ids):], i, 0, 2) for i, ids in enumerate(encoded)]
        cache, mask, last = gen._start_rows(prefix, units)
    finally:
        gen.close()
    own = [len(ids) - 1 for ids in encoded for _ in range(2)]  # each row's columns: all but its last token
    assert mask.sum(1).tolist() == own
    assert all(row[: mask.shape[1] - n].sum() == 0 for row, n in zip(mask, own))  # zeros, then ones
    assert cache.layers[0].keys.shape[2] == mask.shape[1]
    assert last.tolist() == [ids[-1] for ids in encoded for _ in range(2)]


def test_packed_bf16_linear_layers_give_the_same_logits(model_dir):
    """Where oneDNN runs bf16, HFGenerator's bf16 model has every nn.Linear packed, with bit-identical logits; an
    fp32 model keeps its layers."""
    from transformers import AutoModelForCausalLM

    from selfreward.backends.cpu_pack import PackedLinear, can_pack, pack_linears

    plain = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16).eval()
    if not can_pack(plain):
        pytest.skip("this CPU's oneDNN does not run bf16")
    gen = generator(model_dir, dtype=torch.bfloat16)
    ids = torch.tensor([gen._encode(r)[:4] for r in requests()[1:3]])  # two prompts of 4 tokens at least
    try:
        packed = [m for m in gen.model.modules() if isinstance(m, PackedLinear)]
        linears = [m for m in plain.modules() if type(m) is torch.nn.Linear]
        assert len(packed) == len(linears) > 0
        assert not any(type(m) is torch.nn.Linear for m in gen.model.modules())
        with torch.inference_mode():
            assert torch.equal(gen.model(input_ids=ids).logits, plain(input_ids=ids).logits)
    finally:
        gen.close()
    fp32 = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    assert pack_linears(fp32) == 0


def test_a_prefix_read_once_for_all_rows_decodes_what_its_copies_decode(model_dir, monkeypatch):
    """Requests that share a long prefix (as judge prompts share the rubric): decoding keeps the prefix out of the
    rows' cache and attends over it once for all rows. Greedy texts are still generate()'s on each prompt alone, and
    seeded samples are those decoded with the prefix copied into every row (no reuse)."""
    from selfreward.backends import Sampling, grouped_attention, row_groups

    monkeypatch.setattr(row_groups, "SHARED_PREFIX_MIN", 1)  # the tiny model's prefix is short
    shared = "Review the answer below and rate it from one to five, explaining why in a few words first. "
    prompts = [shared + tail for tail in ("Hi", "Name three colors and say why", "Why?", "a b c d e f g h i j")]
    reqs = [[{"role": "user", "content": p}] for p in prompts]
    merged = []
    real = grouped_attention._merge_prefix
    monkeypatch.setattr(grouped_attention, "_merge_prefix", lambda *a, **k: merged.append(1) or real(*a, **k))
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=10)
    sampled = Sampling(n=3, temperature=0.9, top_p=0.95, max_new_tokens=10, seed=5)
    got = {}
    for reuse in (True, False):
        gen = generator(model_dir, batch_size=8, reuse_prefix=reuse)
        try:
            prefix = gen._shared_prefix([gen._encode(r) for r in reqs])
            assert gen._shares(prefix, 12) == reuse and (len(prefix.ids) > 10 or not reuse)
            got[reuse] = (gen.generate(reqs, greedy), gen.generate(reqs, sampled))
            if reuse:
                alone = []
                for r in reqs:
                    ids = torch.tensor([gen._encode(r)])
                    out = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                             min_new_tokens=10, do_sample=False,
                                             pad_token_id=gen.tokenizer.pad_token_id)
                    alone.append(gen.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
        finally:
            gen.close()
        if reuse:
            assert merged, "decoding must have attended over the prefix once"
            count = len(merged)
    assert len(merged) == count, "without reuse nothing is merged"
    assert [t[0] for t in got[True][0]] == alone
    assert got[True] == got[False]


def test_a_cpu_prefills_a_few_thousand_tokens_a_pass_and_decodes_the_same(model_dir, monkeypatch):
    """On a CPU, admissions and prefill-only batches stop at CPU_PREFILL_TOKENS tokens a pass (at least one request):
    the same greedy texts and seeded samples as one prefill of everything, the same option probabilities."""
    from selfreward.backends import Sampling, hf

    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=8)
    sampled = Sampling(n=2, temperature=0.9, top_p=0.95, max_new_tokens=8, seed=2)
    gen = generator(model_dir, batch_size=32)
    prefixes = ["The answer is"] * len(PROMPTS)
    try:
        whole = (gen.generate(requests(), greedy), gen.generate(requests(), sampled),
                 gen.option_probs(requests(), prefixes, ["A", "B"]))
        prefills = []
        real = gen._start_rows
        gen._start_rows = lambda prefix, batch: prefills.append(len(batch)) or real(prefix, batch)
        monkeypatch.setattr(hf, "CPU_PREFILL_TOKENS", 12)
        chunked = (gen.generate(requests(), greedy), gen.generate(requests(), sampled),
                   gen.option_probs(requests(), prefixes, ["A", "B"]))
        assert gen._per_pass(None, 0)(30) == 1 and gen._per_pass(lambda w: 5, 0)(2) == 5
    finally:
        gen.close()
    assert len(prefills) > 2 * 2 and max(prefills) < len(PROMPTS)
    assert chunked[:2] == whole[:2]
    assert sum(chunked[2], []) == pytest.approx(sum(whole[2], []), rel=1e-4)


@pytest.mark.parametrize("batch_size", [64, 12])
def test_a_row_leaves_the_batch_at_the_step_it_ends(model_dir, monkeypatch, batch_size):
    """Every row of every decoding step is still running: a row that ends (a stop string here, at different steps)
    is out of the next step, with every request in the first batch (64) or some waiting to be admitted (12); what
    is decoded is what each request decodes alone (batch_size 1)."""
    from selfreward.backends import Sampling
    from selfreward.backends.hf import HFGenerator

    steps = []
    choose = HFGenerator._choose

    def recorded(logits, rows, sampling):
        steps.append((len(rows), sum(r.done is None for r in rows)))
        return choose(logits, rows, sampling)

    monkeypatch.setattr(HFGenerator, "_choose", staticmethod(recorded))
    sampled = Sampling(n=3, temperature=0.9, top_p=0.95, max_new_tokens=16, seed=4, stop=("k",))
    got = {}
    for size in (batch_size, 1):
        gen = generator(model_dir, batch_size=size)
        try:
            got[size] = gen.generate(requests(), sampled)
        finally:
            gen.close()
    assert all(rows == running for rows, running in steps)
    assert len({rows for rows, _ in steps}) > 3  # rows left at many steps
    assert sum(t.endswith("k") for texts in got[batch_size] for t in texts) > 3
    assert got[batch_size] == got[1]
