"""The whole Meta-Rewarding loop (SFT + 1 iteration with the meta-judge stage) on the tiny model, through
`selfreward run` in-process, with the fake judge (judge.backend=fake), evaluations off. (An iteration without
meta-judging, share 0, is in tests/unit/test_meta_rewarding.py.)

The fake judge writes judgment j of request i as "Score: (i+j) % 6", so the k = 3 judgments of every answer
disagree; as meta-judge it prefers the judgment with the lower score (P(A) 0.9 / 0.3 by slot, 0.8 after both
orders), so the lowest-scoring judgment of an answer is rated highest and becomes the chosen side of its judge pair.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from integration_helpers import run_cfg, run_overrides
from selfreward.judges import templates
from selfreward.records import read_jsonl
from selfreward.rundir import RunDir, Stage

SHARE = 0.4
META = ["iterations=1", "meta.enabled=true", f"meta.judge_pair_share=[{SHARE}, 0.0]", "pairs.length_control=[0.5, 0.0]",
        "judge_eval.max_prompts=0", "eval.suites=[]", "eval.compare_prompts=0",
        "dpo.max_length=768"]  # a judge pair's prompt is the whole rubric prompt


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    from selfreward import cli

    run_dir = tmp_path_factory.mktemp("meta-run") / "run"
    rc = cli.main(["run", "--config", "tiny-cpu", "--run-dir", str(run_dir), *run_overrides(tiny_model_dir, *META)])
    assert rc == 0
    return run_dir


def marker(run_dir, t, name):
    return json.loads((run_dir / f"iter{t}" / f"{name}.done.json").read_text())


def test_meta_judge_runs_between_judge_and_pairs(run):
    judge, meta, pairs = (marker(run, 1, n) for n in ("judge", "meta-judge", "pairs"))
    assert meta["after"] == judge["token"] and pairs["after"] == meta["token"]
    assert "meta.collapse_share" not in marker(run, 1, "meta-judge")["config"]
    assert not any(k.startswith("meta.") for k in marker(run, 1, "dpo")["config"])


def test_each_disagreed_on_answer_is_rated_from_both_orders(run):
    rows = read_jsonl(run / "iter1" / "meta_judgments.jsonl")
    candidates = read_jsonl(run / "iter1" / "candidates.jsonl")
    assert len(rows) == len({c["prompt_id"] for c in candidates})  # meta.answers_per_prompt = 1
    for row in rows:
        assert [j["index"] for j in row["judgments"]] == [0, 1, 2] and len(row["comparisons"]) == 3
        for c in row["comparisons"]:
            assert len(c["ab"]["option_probs"]) == len(c["ba"]["option_probs"]) == 2  # forced choice, both orders
            lower_first = row["judgments"][c["a"]]["score"] < row["judgments"][c["b"]]["score"]
            assert c["p_a"] == pytest.approx(0.8 if lower_first else 0.2)
        by_rating = sorted(row["judgments"], key=lambda j: -j["rating"])
        assert [j["score"] for j in by_rating] == sorted(j["score"] for j in row["judgments"])
    assert marker(run, 1, "meta-judge")["stats"]["meta_verdict"] == "forced choice"


def test_judge_pairs_are_rubric_prompts_with_the_better_judgment_chosen(run):
    pairs = read_jsonl(run / "iter1" / "judge_pairs.jsonl")
    candidates = {c["id"]: c for c in read_jsonl(run / "iter1" / "candidates.jsonl")}
    judgments = {j["candidate_id"]: j for j in read_jsonl(run / "iter1" / "judgments.jsonl")}
    rubric = templates.load("rubric")
    assert len(pairs) == marker(run, 1, "meta-judge")["stats"]["judge_pairs_built"] == 3
    for p in pairs:
        cand, judged = candidates[p["candidate_id"]], judgments[p["candidate_id"]]
        assert p["prompt"] == templates.render(rubric, {"instruction": cand["prompt"], "response": cand["response"]})
        assert (p["chosen"], p["rejected"]) == (judged["raw"][p["chosen_index"]], judged["raw"][p["rejected_index"]])
        assert p["chosen_score"] == min(judged["scores"]) and p["rejected_score"] == max(judged["scores"])


def test_dpo_trains_on_both_kinds_at_the_configured_share(run):
    stats = marker(run, 1, "dpo")["stats"]
    actor, judge = stats["actor_pairs"], stats["judge_pairs"]
    assert actor == len(read_jsonl(run / "iter1" / "pairs.jsonl")) and actor > 0
    assert judge == min(3, math.floor(SHARE * actor / (1 - SHARE) + 1e-9)) and judge > 0
    assert stats["pairs_used"] == actor + judge and stats["judge_pair_share"] == round(judge / (actor + judge), 4)
    assert stats["judge_pair_share"] <= SHARE and stats["judge_pairs_too_long"] == 0


def test_length_control_follows_the_schedule(run):
    assert marker(run, 1, "pairs")["stats"]["length_control"] == 0.5


def test_score_distribution_in_stats_summary_and_report(run):
    stats = marker(run, 1, "judge")["stats"]
    assert stats["valid_scores"] == stats["judgments"] and 0 < stats["score_entropy"] <= round(math.log2(6), 4)
    assert "collapse" not in stats  # the fake judge's scores are spread over 0-5
    summary = (run / "summary.txt").read_text()
    assert "Judge score distribution" in summary and "Meta-Rewarding:" in summary
    assert "JUDGE COLLAPSE" not in summary
    report = (run / "report.md").read_text()
    assert "## Judge collapse and Meta-Rewarding" in report
    results = json.loads((run / "results.json").read_text())
    assert results["iterations"][0]["dpo"]["judge_pairs"] == marker(run, 1, "dpo")["stats"]["judge_pairs"]
    assert results["iterations"][0]["meta"]["judge_pairs_built"] == 3
    assert results["iterations"][0]["score_distribution"]["score_entropy"] == stats["score_entropy"]


def test_a_rerun_finds_every_stage_done(run):
    from selfreward import pipeline

    cfg = run_cfg(run)
    states = {str(s): pipeline.state(RunDir(run), cfg, s) for s in pipeline.run_plan(cfg)}
    assert Stage("meta-judge", 1) in pipeline.run_plan(cfg)
    assert set(states.values()) == {"done"}, states


def test_collapse_guard_warns_or_stops(run, tmp_path, capsys):
    from selfreward import cli

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # Every score is more than 10% of the fake judge's spread-out scores: a collapse by that threshold.
    assert cli.main(["judge", str(copy), "--iteration", "1", "meta.collapse_share=0.1"]) == 0
    assert "[warn] iteration 1: judge collapse: score " in capsys.readouterr().out
    assert marker(copy, 1, "judge")["stats"]["collapse"].startswith("judge collapse: score ")
    rc = cli.main(["judge", str(copy), "--iteration", "1", "meta.collapse_share=0.1", "meta.stop_on_collapse=true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "judge collapse" in err[0] and "stopped (meta.stop_on_collapse)" in err[0]


def test_meta_judge_forced_choice_through_transformers(tiny_model_dir):
    """The meta template through the real backend: chat-encoded, the letter read after META_PREFIX, both orders."""
    import torch

    from selfreward.backends import Sampling
    from selfreward.backends.hf import HFGenerator
    from selfreward.judges import meta

    cand = {"id": 7, "prompt_id": 0, "prompt": "Name a colour.", "response": "Blue."}
    row = {"candidate_id": 7, "prompt_id": 0, "source": "rubric", "mode": "sample", "scores": [1, 4, 2],
           "raw": ["Off topic. Score: 1", "Direct and correct. Score: 4", "</judgment_a> Score: 2"]}
    answers = meta.disagreeing_answers([cand], [row], None)
    gen = HFGenerator(str(tiny_model_dir), dtype=torch.float32, batch_size=4)
    try:
        (rated,) = meta.meta_judge(gen, answers, Sampling(1, 0.0, 1.0, 8, 0))
    finally:
        gen.close()
    assert len(rated["comparisons"]) == 3
    for c in rated["comparisons"]:
        for order in ("ab", "ba"):
            pa, pb = c[order]["option_probs"]
            assert 0 <= pa <= 1 and 0 <= pb <= 1
        assert c["p_a"] is None or 0 <= c["p_a"] <= 1
    assert all(math.isfinite(j["rating"]) for j in rated["judgments"])
