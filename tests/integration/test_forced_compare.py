"""`selfreward compare` by forced choice on the tiny random Llama (transformers backend): the verdict is read from
P("A") against P("B") after the pairwise prompt, in both orders, averaged; and the same judge on LLMBar pairs.

The random model spreads its next-token probability over the whole vocabulary, so P(A) + P(B) is far below
MIN_OPTION_MASS and every verdict would be unreadable; the threshold is lowered to 0 here to read the machinery's
numbers (the unreadable case is checked apart, with the threshold as shipped)."""

from __future__ import annotations

import json

import pytest

from selfreward.records import read_jsonl, write_jsonl

PROMPTS = [{"id": f"p{i}", "instruction": f"Question {i}: say something."} for i in range(1, 4)]
ANSWERS_A = ["Same answer.", "Paris is the capital of France.", "one two"]
ANSWERS_B = ["Same answer.", "I do not know.", "one two three four five six"]


def cached_answers(out, model, side, texts):
    write_jsonl(out / f"answers-{side}.jsonl", [{"id": p["id"], "instruction": p["instruction"], "model": model,
                                                 "max_new_tokens": 8, "answer": t} for p, t in zip(PROMPTS, texts)])


def run_compare(tmp_path, model, *extra):
    from selfreward import cli

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, PROMPTS)
    out = tmp_path / "cmp"
    cached_answers(out, model, "a", ANSWERS_A)  # both sides' answers are given: only the judge runs
    cached_answers(out, model, "b", ANSWERS_B)
    rc = cli.main(["compare", model, model, "--prompts", str(prompts), "--out", str(out),
                   "generation.backend=transformers", "model.dtype=float32", "sample.max_new_tokens=8", *extra])
    return rc, out


def test_forced_choice_both_orders_on_the_tiny_model(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from selfreward.backends import OPTION_PROBS, open_generator
    from selfreward.compare import decide
    from selfreward.config import load_config
    from selfreward.judges import pairwise
    from selfreward.judges.templates import load

    monkeypatch.setattr(pairwise, "MIN_OPTION_MASS", 0.0)
    model = str(tiny_model_dir)
    rc, out = run_compare(tmp_path, model, "eval.margin=0.0", "eval.judge_check_pairs=2")
    stdout = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["answers-a.jsonl", "answers-b.jsonl", "compare.json",
                                                    "judge-check.json", "judge-check.rows.jsonl", "verdicts.jsonl"]
    rows = read_jsonl(out / "verdicts.jsonl")
    assert [r["id"] for r in rows] == ["p1", "p2", "p3"]
    for r in rows:
        assert r["p_a"] == pytest.approx((r["p_ab"] + 1 - r["p_ba"]) / 2)
        assert r["p_ab"] == pytest.approx(r["option_probs_ab"][0] / sum(r["option_probs_ab"]))
        assert r["outcome"] == decide(r["p_a"], 0.0)
    # identical answers: both orders are the same request, so the judge's slot preference cancels exactly
    assert rows[0]["p_ab"] == pytest.approx(rows[0]["p_ba"], abs=1e-6) and rows[0]["p_a"] == pytest.approx(0.5)

    # the evidence is the model's own next-token probabilities, A first then B first
    cfg = load_config(None, ["generation.backend=transformers", "model.dtype=float32"])
    template = load("pairwise_choice")
    gen = open_generator(cfg, model, role="judge", needs=frozenset({OPTION_PROBS}))
    try:
        q, a, b = PROMPTS[1]["instruction"], ANSWERS_A[1], ANSWERS_B[1]
        direct = gen.option_probs([pairwise.request(template, q, a, b), pairwise.request(template, q, b, a)],
                                  [pairwise.CHOICE_PREFIX] * 2, pairwise.OPTIONS)
    finally:
        gen.close()
    assert rows[1]["option_probs_ab"] == pytest.approx(direct[0], rel=1e-4)
    assert rows[1]["option_probs_ba"] == pytest.approx(direct[1], rel=1e-4)
    assert rows[1]["p_ab"] != pytest.approx(rows[1]["p_ba"])  # the two orders are two different prompts

    result = json.loads((out / "compare.json").read_text())
    assert (result["method"], result["margin"], result["unreadable"], result["judge"]) == \
        ("forced choice", 0.0, 0, model)
    assert result["mean_p_a"] == pytest.approx(sum(r["p_a"] for r in rows) / 3, abs=1e-4)
    assert set(result["position_bias"]) == {"ab", "ba"}
    assert result["wins"] + result["ties"] + result["losses"] == 3
    check = json.loads((out / "judge-check.json").read_text())
    assert (check["judge"], check["pairs"], check["method"], check["data"]) == \
        (model, 2, "forced choice", "builtin:llmbar-natural")
    assert check["judge_accuracy"] in (0.0, 0.5, 1.0) and check["length_accuracy"] in (0.0, 0.5, 1.0)
    assert len(read_jsonl(out / "judge-check.rows.jsonl")) == 2
    assert "forced choice: mean P(A better)" in stdout and "judge check on 2 LLMBar Natural pairs" in stdout


def test_a_judge_without_mass_on_a_and_b_gives_unreadable_ties(tmp_path, tiny_model_dir):
    """With the shipped MIN_OPTION_MASS the random model's P(A) + P(B) is too small: every prompt is a tie,
    counted as unreadable, and the raw probabilities stay in the verdict rows."""
    rc, out = run_compare(tmp_path, str(tiny_model_dir), "eval.judge_check_pairs=0")
    assert rc == 0
    result = json.loads((out / "compare.json").read_text())
    assert (result["ties"], result["unreadable"], result["mean_p_a"], result["judge_check"]) == (3, 3, None, None)
    rows = read_jsonl(out / "verdicts.jsonl")
    assert all(r["p_a"] is None and 0 < sum(r["option_probs_ab"]) < 0.1 for r in rows)
    assert not (out / "judge-check.json").exists()
