"""`selfreward bench` at toy size on the tiny model: every configuration runs, and the report's figures are
consistent with the artifacts the configurations wrote."""

from __future__ import annotations

import json

import pytest


def test_bench_smoke(tiny_model_dir, tmp_path, capsys):
    from selfreward import cli

    out, work = tmp_path / "bench.json", tmp_path / "work"
    rc = cli.main(["bench", "--model", str(tiny_model_dir), "--prompts", "2", "--n", "2", "--max-new-tokens", "4",
                   "--k", "2", "--judge-max-new-tokens", "4", "--batch-size", "4", "--dpo-batch-size", "2",
                   "--ceiling-batches", "1,2", "--out", str(out), "--work", str(work)])
    assert rc == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    fast, naive = report["fast"]["stages"], report["naive"]["stages"]

    candidates = [json.loads(x) for x in (work / "fast" / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == 4 and [c["prompt_id"] for c in candidates] == [0, 0, 1, 1]
    for name in ("fast", "naive"):
        judgments = [json.loads(x) for x in (work / name / "judgments.jsonl").read_text().splitlines()]
        assert len(judgments) == 4 and all(len(j["raw"]) == 2 for j in judgments)  # fast's 4 answers, k=2 each
    # a random model writes no "Score:": every judgment unparsed, so DPO trains on one timing pair per prompt
    assert fast["judge"]["parse_failures"] == naive["judge"]["parse_failures"] == 8
    pairs = [json.loads(x) for x in (work / "fast" / "pairs.jsonl").read_text().splitlines()]
    assert pairs == [json.loads(x) for x in (work / "naive" / "pairs.jsonl").read_text().splitlines()]
    assert [(p["chosen"], p["rejected"], p["judged"]) for p in pairs] == \
        [(candidates[0]["response"], candidates[1]["response"], False),
         (candidates[2]["response"], candidates[3]["response"], False)]
    for stages in (fast, naive):
        assert stages["dpo"]["pairs"] == 2 and stages["dpo"]["steps"] == 1
        s = stages["sample"]
        assert 0 < s["generated_tokens"] < s["processed_tokens"]
        assert s["generated_tok_s"] == pytest.approx(s["generated_tokens"] / s["wall_s"], abs=0.1)
        assert all(stages[x]["peak_rss_mb"] > 100 for x in ("sample", "judge", "dpo"))  # torch alone is more

    summary = report["summary"]
    walls = {c: sum(report[c]["stages"][s]["wall_s"] for s in ("sample", "judge", "dpo")) for c in ("fast", "naive")}
    assert summary["iteration_s"] == pytest.approx(walls, abs=0.02)
    assert summary["speedup"]["iteration"] == pytest.approx(walls["naive"] / walls["fast"], rel=0.01)
    ceiling = report["ceiling"]
    assert set(ceiling["by_batch"]) == {"1", "2"}
    for rows, v in ceiling["by_batch"].items():
        assert v["tok_s"] == pytest.approx(int(rows) * 4 / v["wall_s"], rel=0.02)
    assert summary["sample_fraction_of_ceiling"] == pytest.approx(fast["sample"]["generated_tok_s"] / ceiling["tok_s"],
                                                                  abs=1e-3)
    drift = summary["bf16_vs_fp32"]
    assert report["naive"]["dtype"] == "float32"
    assert drift["logprob_tokens"] > 0
    if report["fast"]["dtype"] == "float32":  # no bf16 on this machine: the same weights and dtype
        assert drift["logprob_abs_diff_max"] < 1e-4
    else:
        assert drift["logprob_abs_diff_mean"] > 0
    # the same 4 answers judged greedily in expected mode by both; a random model puts no mass on the digits
    assert drift["expected_judgments"] == 4 and drift["expected_scored_by_both"] == 0
    assert "iteration" in printed and "ceiling:" in printed and "logprob_abs_diff_mean" in printed


def test_bench_rejects_bad_sizes(capsys):
    from selfreward import cli

    assert cli.main(["bench", "--n", "1"]) == 2
    assert cli.main(["bench", "--ceiling-batches", "8,x"]) == 2
    err = capsys.readouterr().err
    assert "--n at least 2" in err and "--ceiling-batches must be integers" in err
