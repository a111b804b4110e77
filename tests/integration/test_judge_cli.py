"""`selfreward eval-judge` and `selfreward build-eft` in-process on the tiny model, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration_helpers import clear_fake_calls, fake_calls


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# LLMBar pairs. --max-prompts 2 with seed 0 takes rows 2 and 3 (random.Random(0).sample(range(3), 2) == [1, 2]).
LLMBAR = [
    {"input": "Say hi.", "output_1": "Hi", "output_2": "Hello there, friend!", "label": 1},
    {"input": "What is 2+2?", "output_1": "2+2 equals 4, since two plus two is four.", "output_2": "5", "label": 1},
    {"input": "Name a color.", "output_1": "Well, there are many colors; one of them is blue.", "output_2": "Blue.",
     "label": 2},
]


def test_eval_judge_expected_mode(tmp_path, tiny_model_dir, capsys):
    from selfreward import cli

    data = write_jsonl(tmp_path / "llmbar.jsonl", LLMBAR)
    out = tmp_path / "out"
    rc = cli.main(["eval-judge", "--model", str(tiny_model_dir), "--data", str(data), "--max-prompts", "2",
                   "--mode", "expected", "--out", str(out), "model.dtype=float32", "judge.max_new_tokens=4"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["llmbar.expected.json", "llmbar.expected.judgments.jsonl"]
    assert "llmbar: 2 prompts, 4 responses" in stdout and f"Judgments and metrics in {out}/" in stdout
    assert "length heuristic" in stdout and "random" in stdout

    rows = read_jsonl(out / "llmbar.expected.judgments.jsonl")
    assert [(r["group_id"], r["response_id"], r["human"], r["chars"]) for r in rows] == [
        ("row 2", "row 2-0", 1.0, 41), ("row 2", "row 2-1", 0.0, 1),
        ("row 3", "row 3-0", 0.0, 49), ("row 3", "row 3-1", 1.0, 5),
    ]
    for r in rows:
        assert r["mode"] == "expected" and len(r["raw"]) == 1
        # a random model gives the digits almost no probability: unscored, never a made-up number
        assert 0 < r["digit_mass"] < 0.1
        assert r["score"] is None and r["spread"] is None and r["digit_probs"] is None

    result = json.loads((out / "llmbar.expected.json").read_text())
    assert (result["model"], result["path"], result["data"], result["mode"], result["notes"]) == \
        (str(tiny_model_dir), str(tiny_model_dir), str(data), "expected", [])
    judge, length, random_ = result["judge"], result["length"], result["random"]
    # 2 human-ordered pairs, both judge ties (no score) -> half credit
    assert (judge["pairs"], judge["agree"], judge["tie"], judge["disagree"]) == (2, 0, 2, 0)
    assert judge["pairwise_accuracy"] == 0.5 and judge["parse_failure_rate"] == 1.0 and judge["mean_score"] is None
    # longer wins in row 2 (right), loses in row 3 (the shorter "Blue." is preferred)
    assert (length["pairs"], length["agree"], length["disagree"]) == (2, 1, 1)
    assert length["pairwise_accuracy"] == 0.5
    assert (length["shorter_preferred_pairs"], length["shorter_preferred_accuracy"]) == (1, 0.0)
    assert random_["pairs"] == 2 and 0.3 < random_["pairwise_accuracy"] < 0.7


# Ranked responses, grouped by prompt_id. The fake judge scores response i (in file order) by its judgment
# closest to the mean of (i, i+1, i+2) % 6: 1, 2, 3, 4, 4, 1, 1, 2, 3.
RANKED = [
    {"prompt_id": "pa", "id": "a1", "prompt": "Say hi.", "response": "Hi", "human_score": 0.2},
    {"prompt_id": "pa", "id": "a2", "prompt": "Say hi.", "response": "Hello!", "human_score": 0.9},      # 1 < 2: kept
    {"prompt_id": "pb", "id": "b1", "prompt": "Add 2+2.", "response": "4", "human_score": 0.9},
    {"prompt_id": "pb", "id": "b2", "prompt": "Add 2+2.", "response": "5", "human_score": 0.1},  # 3 < 4: disagrees
    {"prompt_id": "pc", "id": "c1", "prompt": "A color?", "response": "Blue.", "human_score": 1.0},
    {"prompt_id": "pc", "id": "c2", "prompt": "A color?", "response": "Dunno.", "human_score": 0.5},
    {"prompt_id": "pc", "id": "c3", "prompt": "A color?", "response": "Maybe.", "human_score": 0.5},  # 4 > 1 = 1: kept
    {"prompt_id": "pd", "id": "d1", "prompt": "A number?", "response": "7", "human_score": 0.5},
    {"prompt_id": "pd", "id": "d2", "prompt": "A number?", "response": "8", "human_score": 0.5},        # no human order
]


def test_build_eft_with_the_fake_judge(tmp_path, tiny_model_dir, capsys):
    from selfreward import cli
    from selfreward.data import load_eft
    from selfreward.judges import templates
    from selfreward.judges.rubric import requests_for

    data = write_jsonl(tmp_path / "ranked.jsonl", RANKED)
    out = tmp_path / "eft"
    args = ["build-eft", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "judge.backend=fake"]
    clear_fake_calls()
    assert cli.main(args) == 0
    stdout = capsys.readouterr().out
    assert f"{data}: 4 prompts, 9 responses; 1 prompt whose responses all share one human value" in stdout
    (call,) = fake_calls()
    assert (call["desc"], call["model"]) == ("build-eft judge", str(tiny_model_dir))
    assert call["requests"] == requests_for(templates.load("rubric"), [(r["prompt"], r["response"]) for r in RANKED])
    s = call["sampling"]
    assert (s.n, s.temperature, s.top_p, s.max_new_tokens, s.seed) == (3, 0.7, 0.9, 256, 0)  # judge.* defaults

    stats = json.loads((out / "stats.json").read_text())
    assert stats == {
        "judge_model": str(tiny_model_dir), "judge_mode": "sample",
        "groups_in": 4, "responses_in": 9, "responses_unscored": 0, "groups_kept": 2,
        "groups_dropped": {"unscored": 0, "no human order": 1, "disagrees": 1}, "responses_blank_dropped": 0,
        "rows_kept": 5, "rows_rebalanced": 3,
        "score_hist_kept": {"0": 0, "1": 3, "2": 1, "3": 0, "4": 1, "5": 0},
        # the 1s (the most frequent score) thinned to the runner-up's count
        "score_hist_rebalanced": {"0": 0, "1": 1, "2": 1, "3": 0, "4": 1, "5": 0},
        # prompt "pa" hashes into the eval quarter with seed 0, "pc" into train
        "train_rows": 2, "eval_rows": 1, "train_prompts": 1, "eval_prompts": 1,
    }
    train, evals = read_jsonl(out / "eft_train.jsonl"), read_jsonl(out / "eft_eval.jsonl")
    assert [(r["id"], r["prompt_id"], r["score"], r["target"], r["human_score"]) for r in train] == [
        ("c1", "pc", 4, "Looks fine. Score: 4", 1.0), ("c2", "pc", 1, "Looks fine. Score: 1", 0.5)]
    assert [(r["id"], r["prompt_id"], r["score"], r["target"]) for r in evals] == \
        [("a2", "pa", 2, "Looks fine. Score: 2")]
    assert all(r["source"] == "build-eft" and r["response"] and r["prompt"] for r in train + evals)
    assert len(read_jsonl(out / "judgments.jsonl")) == 9
    # the output is EFT data a run can train on
    assert len(load_eft(str(out / "eft_train.jsonl"), "eft_train")) == 2

    # the same command again reuses the judgments: no judge is opened, the outputs are the same
    before = {name: (out / name).read_text() for name in ("eft_train.jsonl", "eft_eval.jsonl", "stats.json")}
    clear_fake_calls()
    assert cli.main(args) == 0
    assert fake_calls() == []
    assert "[skip] judgments: done" in capsys.readouterr().out
    assert {name: (out / name).read_text() for name in before} == before


# --- errors: one line on stderr, exit 2, before any model is loaded ---------------------------------------------

UNKNOWN_FORMAT = [{"question": "x", "answer": "y"}]


@pytest.mark.parametrize("case, expected", [
    ("eval-judge missing data", "judge set not found: {tmp}/missing.jsonl"),
    ("eval-judge max-prompts 0", "--max-prompts must be at least 1, got 0"),
    ("eval-judge unknown format", "{tmp}/odd.jsonl row 1: unknown judge-set format; fields found: answer, question"),
    ("build-eft missing data", "judge set not found: {tmp}/missing.jsonl"),
    ("build-eft eval-fraction 1.5", "--eval-fraction must be in [0, 1), got 1.5"),
    ("build-eft max-prompts 0", "--max-prompts must be at least 1, got 0"),
    ("build-eft unknown format", "{tmp}/odd.jsonl row 1: unknown judge-set format; fields found: answer, question"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, case, expected):
    from selfreward import cli

    odd = write_jsonl(tmp_path / "odd.jsonl", UNKNOWN_FORMAT)
    good = write_jsonl(tmp_path / "llmbar.jsonl", LLMBAR)
    missing = tmp_path / "missing.jsonl"
    model = str(tmp_path / "no-model-needed")  # never reached: every error comes first
    args = {
        "eval-judge missing data": ["eval-judge", "--model", model, "--data", str(missing)],
        "eval-judge max-prompts 0": ["eval-judge", "--model", model, "--data", str(good), "--max-prompts", "0"],
        "eval-judge unknown format": ["eval-judge", "--model", model, "--data", str(good), "--data", str(odd)],
        "build-eft missing data": ["build-eft", "--model", model, "--data", str(missing), "--out", str(tmp_path / "o")],
        "build-eft eval-fraction 1.5": ["build-eft", "--model", model, "--data", str(good), "--eval-fraction", "1.5"],
        "build-eft max-prompts 0": ["build-eft", "--model", model, "--data", str(good), "--max-prompts", "0"],
        "build-eft unknown format": ["build-eft", "--model", model, "--data", str(odd), "--out", str(tmp_path / "o")],
    }[case]
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("selfreward: error: " + expected.format(tmp=tmp_path))
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
    assert captured.out == ""
    assert not (tmp_path / "o").exists()  # nothing written
