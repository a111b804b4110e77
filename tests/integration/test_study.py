"""`selfreward study` end to end on the tiny model: 2 variants x 1 iteration sharing SFT, prompts and answers."""

from __future__ import annotations

import json

from integration_helpers import run_overrides
from selfreward.records import read_jsonl


def test_two_variants_share_the_start_and_differ_from_judging_on(tmp_path, tiny_model_dir, capsys):
    from selfreward import cli

    out = tmp_path / "study"
    args = ["study", "--config", "tiny-cpu", "--sources", "rubric,implicit", "--out", str(out),
            *run_overrides(tiny_model_dir, "iterations=1", "judge_eval.max_prompts=1", "eval.compare_prompts=2",
                           "judge_eval.sets=[builtin:llmbar-natural]", "generation.backend=transformers",
                           "judge.backend=fake")]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "| variant | model | EFT acc |" in printed
    shared = out / "shared"
    for name in ("rubric", "implicit"):
        run = out / name
        # the shared stages are the very same files (hard links), markers included
        for rel in ("sft/model/model.safetensors", "iter1/candidates.jsonl", "iter1/sample.done.json",
                    "eval/eval-M1.done.json"):
            assert (run / rel).stat().st_ino == (shared / rel).stat().st_ino, rel
        judgments = read_jsonl(run / "iter1" / "judgments.jsonl")
        assert {j["source"] for j in judgments} == {name}
        assert (run / "iter1" / "model" / "model.safetensors").is_file()
        assert not (run / "iter1" / "judgments.jsonl").samefile(out / ("implicit" if name == "rubric" else "rubric")
                                                                 / "iter1" / "judgments.jsonl")
    # the implicit variant has no reward for the base model: its eval-judge M0 says so
    m0 = json.loads((out / "implicit" / "eval" / "judge-M0.done.json").read_text())["stats"]
    assert m0["skipped"]
    table = json.loads((out / "study.json").read_text())
    assert [(r["variant"], r["model"]) for r in table["rows"]] == [("rubric", "M1"), ("rubric", "M2"),
                                                                    ("implicit", "M1"), ("implicit", "M2")]
    m2 = next(r for r in table["rows"] if r["variant"] == "rubric" and r["model"] == "M2")
    assert m2["llmbar_length_baseline_accuracy"] is not None and m2["eft_length_baseline_accuracy"] is not None
    first = next(r for r in table["rows"] if r["model"] == "M1")
    assert first["pairs"] is not None and first["mean_response_chars"] is not None
    assert (out / "study.md").read_text().startswith("| variant |")

    # run again: everything is done, nothing is recomputed
    assert cli.main(args) == 0
    assert "[run ]" not in capsys.readouterr().out

    # a variant added to the same study through study.variants (docs/study.md): only it runs, and the table
    # covers all three
    listed = ('study.variants=["rubric: reward.source=rubric", "implicit: reward.source=implicit", '
              '"rubric-lc: reward.source=rubric pairs.length_control=0.3"]')
    more = [a for a in args if a not in ("--sources", "rubric,implicit")] + [listed]
    assert cli.main(more) == 0
    before, _, added = capsys.readouterr().out.partition("=== variant rubric-lc")
    assert "[run ]" not in before and "[run ] pairs (iteration 1)" in added
    table = json.loads((out / "study.json").read_text())
    assert {r["variant"] for r in table["rows"]} == {"rubric", "implicit", "rubric-lc"}
