"""Reward sources through the real transformers backend on the tiny model, and through the fake backend inside a
finished tiny run: the judge stage writes each source's evidence, pairs reads it."""

from __future__ import annotations

import pytest
import torch

from integration_helpers import run_cfg
from selfreward import pipeline
from selfreward.records import read_jsonl
from selfreward.rundir import RunDir, Stage


def hand_logprob(model_dir, tokenizer_messages_ids: list[int], response_ids: list[int]) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer_messages_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    total = 0.0
    for k, tok in enumerate(response_ids):
        pos = len(tokenizer_messages_ids) + k
        total += torch.log_softmax(logits[pos - 1], -1)[tok].item()  # token at pos is predicted at pos - 1
    return total


def test_logprobs_match_a_hand_computation(tiny_model_dir):
    from selfreward.backends.chat import encode_chat
    from selfreward.backends.hf import HFGenerator

    gen = HFGenerator(str(tiny_model_dir), dtype=torch.float32, batch_size=4)
    requests = [[{"role": "user", "content": "Name a colour."}],
                [{"role": "user", "content": "Count to three, please."}],
                [{"role": "user", "content": "Hi"}]]
    responses = ["Blue.", "One, two, three. <|im_end|> and more", "Hello there, how can I help you today?"]
    got = gen.logprobs(requests, responses)
    for (msgs, resp), lp in zip(zip(requests, responses), got):
        prompt = encode_chat(gen.tokenizer, msgs)
        resp_ids = gen.tokenizer(resp, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert lp.tokens == len(resp_ids)
        assert lp.total == pytest.approx(hand_logprob(tiny_model_dir, prompt, resp_ids), abs=1e-4)
    gen.close()


def test_logprobs_compute_the_continuations_logits_only(tiny_model_dir):
    """Regression: the logits of a whole padded batch ([rows, width, vocabulary]) took 3 GB for 32 EFT answers of
    the default model; only the last (longest continuation + 1) positions are needed."""
    from selfreward.backends.hf import HFGenerator

    gen = HFGenerator(str(tiny_model_dir), dtype=torch.float32, batch_size=4)
    shapes = []
    forward = gen.model.forward

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        shapes.append((kwargs["input_ids"].shape, out.logits.shape))
        return out

    gen.model.forward = recording
    try:
        requests = [[{"role": "user", "content": "A long question, with many words in it, " * 4}],
                    [{"role": "user", "content": "Hi"}]]
        got = gen.logprobs(requests, ["Yes.", "Hello there, how can I help you today?"])
    finally:
        gen.close()
    longest = max(lp.tokens for lp in got)
    [(ids_shape, logits_shape)] = shapes
    assert logits_shape[:2] == (2, longest + 1) and ids_shape[1] > longest + 1


def judge_with(run_copy, *overrides):
    rd = RunDir(run_copy)
    cfg = run_cfg(run_copy, *overrides)
    pipeline.execute(rd, cfg, Stage("judge", 2))
    return rd, cfg, read_jsonl(rd.artifact(2, "judgments.jsonl"))


def test_implicit_reward_uses_the_model_mt_was_trained_from(run_copy):
    """Iteration 2 scores M2's answers against M1 (its DPO start), not M2 itself: with M_t as its own reference
    every reward would be exactly 0."""
    from selfreward.backends.hf import HFGenerator
    from selfreward.judges.sources import logprob_requests

    rd, _, rows = judge_with(run_copy, "reward.source=implicit", "reward.beta=0.5", "generation.backend=transformers")
    candidates = read_jsonl(rd.artifact(2, "candidates.jsonl"))
    assert [r["source"] for r in rows] == ["implicit"] * len(candidates)
    requests, responses = logprob_requests(candidates)
    for path, key in ((rd.policy(2), "logp"), (rd.policy(1), "logp_ref")):
        gen = HFGenerator(str(path), dtype=torch.float32)
        expected = [lp.total for lp in gen.logprobs(requests, responses)]
        gen.close()
        assert [r[key] for r in rows] == pytest.approx(expected, abs=1e-4)
    assert any(abs(r["score"]) > 1e-6 for r in rows)
    assert all(r["score"] == pytest.approx(0.5 * (r["logp"] - r["logp_ref"])) for r in rows)


def test_implicit_reward_of_m1_is_against_the_base_model(run_copy, tiny_model_dir):
    from selfreward.stages.judge import reference_model
    from selfreward.stages.spec import Context

    cfg = run_cfg(run_copy)
    assert reference_model(Context(RunDir(run_copy), cfg, 1)) == str(tiny_model_dir)
    assert reference_model(Context(RunDir(run_copy), cfg, 2)) == str(run_copy / "sft" / "model")


def test_pairwise_forced_choice_through_transformers(run_copy, monkeypatch):
    from selfreward.judges import pairwise

    # A random model puts about 1/vocab on each letter, far below the threshold that reads a preference; with none
    # every p_win would be None and every prompt's candidates tie, which pairs rightly skips.
    monkeypatch.setattr(pairwise, "MIN_OPTION_MASS", 0.0)
    rd, _, rows = judge_with(run_copy, "reward.source=pairwise", "judge.backend=transformers")
    candidates = read_jsonl(rd.artifact(2, "candidates.jsonl"))
    per_prompt = {c["prompt_id"] for c in candidates}
    assert len(rows) == len(candidates) and all(r["source"] == "pairwise" for r in rows)
    by_id = {r["candidate_id"]: r for r in rows}
    for r in rows:
        assert len(r["comparisons"]) == 3  # 4 answers per prompt: each meets the other 3
        for c in r["comparisons"]:
            assert len(c["ab"]["option_probs"]) == 2 and len(c["ba"]["option_probs"]) == 2
            # one comparison, seen from both sides: p and 1 - p
            back = next(x for x in by_id[c["vs"]]["comparisons"] if x["vs"] == r["candidate_id"])
            assert c["p_win"] is not None and c["p_win"] == pytest.approx(1 - back["p_win"])
    assert {r["prompt_id"] for r in rows} == per_prompt
    pipeline.execute(rd, run_cfg(run_copy, "reward.source=pairwise"), Stage("pairs", 2))
    assert read_jsonl(rd.artifact(2, "pairs.jsonl"))


def test_ensemble_records_both_sources_and_their_agreement(run_copy):
    rd, cfg, rows = judge_with(run_copy, "reward.source=ensemble", "reward.ensemble=[rubric,implicit]",
                               "generation.backend=transformers")
    assert all(set(r["sources"]) == {"rubric", "implicit"} and r["score"] == r["sources"]["rubric"]["score"]
               for r in rows)
    stats = rd.marker(Stage("judge", 2))["stats"]
    assert stats["source_pairs"] > 0 and 0 <= stats["source_agreement"] <= 1
    pipeline.execute(rd, cfg, Stage("pairs", 2))
    pairs = read_jsonl(rd.artifact(2, "pairs.jsonl"))
    implicit = {r["candidate_id"]: r["sources"]["implicit"]["score"] for r in rows}
    assert all(implicit[p["chosen_id"]] > implicit[p["rejected_id"]] for p in pairs)


def test_require_eos_leaves_cut_off_answers_unscored_and_counts_them(run_copy):
    rd = RunDir(run_copy)
    candidates = read_jsonl(rd.artifact(2, "candidates.jsonl"))
    # the tiny random model never ends an answer within 12 tokens
    assert candidates and not any(c["finished"] for c in candidates)
    _, _, rows = judge_with(run_copy, "sample.require_eos=true")
    assert all(r["score"] is None and r["cut_off"] for r in rows)
    stats = rd.marker(Stage("judge", 2))["stats"]
    assert stats["cut_off"] == len(candidates) and stats["unscored_candidates"] == len(candidates)
