"""`selfreward bench` at toy size on the tiny model: every configuration runs the real stages on a run directory of
its own, and the report's figures are consistent with the artifacts those stages wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


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

    # each configuration ran the real stages through pipeline.execute on its own run directory
    it = {name: work / name / "run" / "iter1" for name in ("fast", "naive")}
    for name, d in it.items():
        assert report[name]["run_dir"] == str(work / name / "run")
        assert (work / name / "run" / "config.yaml").is_file()
        assert (work / name / "run" / "sft" / "model").resolve() == tiny_model_dir.resolve()
        for stage in ("sample", "judge", "pairs", "dpo"):
            marker = json.loads((d / f"{stage}.done.json").read_text())
            assert marker["stage"] == stage and marker["iteration"] == 1
        assert (d / "model" / "model.safetensors").is_file()  # the DPO stage's M2
        assert report[name]["stages"]["dpo"]["stats"]["steps"] == 1  # the stage's own stats, as its marker has
    cfg = {name: (work / name / "run" / "config.yaml").read_text() for name in it}
    assert "precompute_ref_log_probs: true" in cfg["fast"] and "precompute_ref_log_probs: false" in cfg["naive"]
    assert "mixed_precision: fp32" in cfg["naive"] and "dtype: float32" in cfg["naive"]

    candidates = _jsonl(it["fast"] / "candidates.jsonl")
    assert len(candidates) == 4 and [c["prompt_id"] for c in candidates] == [0, 0, 1, 1]
    # naive sampled its own answers (kept aside), then judged the fast one's
    assert len(_jsonl(it["naive"] / "candidates.own.jsonl")) == 4
    assert _jsonl(it["naive"] / "candidates.jsonl") == candidates
    for d in it.values():
        judgments = _jsonl(d / "judgments.jsonl")
        assert [j["candidate_id"] for j in judgments] == [0, 1, 2, 3]  # fast's 4 answers, k=2 each
        assert all(len(j["raw"]) == 2 for j in judgments)
    # a random model writes no "Score:": every judgment unparsed, the pairs stage gives no pair, and DPO trains on
    # one timing pair per prompt
    assert fast["judge"]["parse_failures"] == naive["judge"]["parse_failures"] == 8
    assert fast["judge"]["stats"]["judgments"] == 8
    assert _jsonl(it["fast"] / "pairs.judged.jsonl") == _jsonl(it["naive"] / "pairs.judged.jsonl") == []
    pairs = _jsonl(it["fast"] / "pairs.jsonl")
    assert pairs == _jsonl(it["naive"] / "pairs.jsonl")
    assert [(p["chosen"], p["rejected"], p["judged"]) for p in pairs] == \
        [(candidates[0]["response"], candidates[1]["response"], False),
         (candidates[2]["response"], candidates[3]["response"], False)]
    for stages in (fast, naive):
        assert stages["dpo"]["pairs"] == 2 and stages["dpo"]["steps"] == 1
        d = stages["dpo"]
        assert 0 < d["train_s"] < d["wall_s"] and d["s_per_step"] == pytest.approx(d["train_s"], abs=0.01)
        assert stages["sample"]["open_s"] > 0 and stages["judge"]["open_s"] > 0  # model loads, outside wall_s
        s = stages["sample"]
        assert 0 < s["generated_tokens"] < s["processed_tokens"]
        assert s["generated_tok_s"] == pytest.approx(s["generated_tokens"] / s["wall_s"], abs=0.1)
        assert all(stages[x]["peak_rss_mb"] > 100 for x in ("sample", "judge", "dpo"))  # torch alone is more

    summary = report["summary"]
    walls = {c: sum(report[c]["stages"][s]["wall_s"] for s in ("sample", "judge", "dpo")) for c in ("fast", "naive")}
    assert summary["iteration_s"] == pytest.approx(walls, abs=0.02)
    assert summary["speedup"]["iteration"] == pytest.approx(walls["naive"] / walls["fast"], rel=0.01)
    ceiling = report["ceiling"]
    # and at the 2 x 2 rows the sample stage decodes at once, added to the batches asked for
    assert set(ceiling["by_batch"]) == {"1", "2", "4"} and ceiling["repeats"] == 3
    for rows, v in ceiling["by_batch"].items():
        assert len(v["repeats"]) == 3  # after an untimed warm-up at this batch size
        rates = [r["tok_s"] for r in v["repeats"]]
        for r in v["repeats"]:
            assert r["tok_s"] == pytest.approx(int(rows) * 4 / r["wall_s"], rel=0.02)
        assert v["tok_s"] == pytest.approx(sum(rates) / 3, abs=0.1)
        assert (v["tok_s_min"], v["tok_s_max"]) == (min(rates), max(rates))
        assert v["tok_s_min"] <= v["tok_s"] <= v["tok_s_max"] and v["tok_s_std"] >= 0
        assert f"{rows}: {v['tok_s']} [{v['tok_s_min']}-{v['tok_s_max']}, {v['tok_s_std']}]" in printed
    assert ceiling["tok_s"] == max(v["tok_s"] for v in ceiling["by_batch"].values())
    assert summary["sample_fraction_of_ceiling"] == pytest.approx(fast["sample"]["generated_tok_s"] / ceiling["tok_s"],
                                                                  abs=1e-3)
    assert summary["sample_rows"] == 4
    assert summary["sample_fraction_of_ceiling_at_its_rows"] == pytest.approx(
        fast["sample"]["generated_tok_s"] / ceiling["by_batch"]["4"]["tok_s"], abs=1e-3)
    assert summary["sample_token_slots_filled"] == pytest.approx(fast["sample"]["generated_tokens"] / (2 * 2 * 4),
                                                                 abs=1e-3)
    assert "at the 4 rows the sample stage decodes at once" in printed
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
