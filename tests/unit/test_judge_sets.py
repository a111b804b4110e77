"""judge_sets: each format into groups, each bad input into a one-line error naming file, row and field."""

import json
from pathlib import Path

import pytest

from selfreward.errors import UserError
from selfreward.judges.metrics import judge_metrics
from selfreward.judges.sets import load_judge_set

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def user_error(spec):
    with pytest.raises(UserError) as e:
        load_judge_set(spec)
    assert "\n" not in str(e.value)
    return str(e.value)


def humans(group):
    return [r["human"] for r in group["responses"]]


def test_ranked_by_prompt_id_with_human_score(tmp_path):
    spec = write_rows(tmp_path / "r.jsonl", [
        {"id": "r1", "prompt_id": "p1", "prompt": "Q1", "response": "A", "human_score": 0.9},
        {"id": "r2", "prompt_id": "p1", "prompt": "Q1", "response": "B", "human_score": 0.1},
        {"id": "r3", "prompt_id": "p2", "prompt": "Q2", "response": "C", "human_score": 1},
        {"id": "r4", "prompt_id": "p2", "prompt": "Q2", "response": "D", "human_score": 0},
        {"id": "r5", "prompt_id": "p3", "prompt": "Q3", "response": "E", "human_score": 1},
    ])
    groups, notes = load_judge_set(spec)
    assert [g["id"] for g in groups] == ["p1", "p2"]
    assert groups[0] == {"id": "p1", "prompt": "Q1", "responses": [
        {"text": "A", "human": 0.9, "id": "r1"}, {"text": "B", "human": 0.1, "id": "r2"}]}
    assert humans(groups[1]) == [1.0, 0.0]
    assert notes == ["1 prompt with fewer than 2 responses dropped"]


def test_ranked_by_prompt_text_with_rank(tmp_path):
    spec = write_rows(tmp_path / "r.jsonl", [
        {"prompt": "Q1", "response": "second", "rank": 1},
        {"prompt": "Q2", "response": "x", "rank": 0},
        {"prompt": "Q1", "response": "best", "rank": 0},
        {"prompt": "Q2", "response": "y", "rank": 3},
    ])
    groups, notes = load_judge_set(spec)
    assert [(g["id"], g["prompt"]) for g in groups] == [("row 1", "Q1"), ("row 2", "Q2")]
    assert [r["text"] for r in groups[0]["responses"]] == ["second", "best"]
    assert humans(groups[0]) == [-1.0, 0.0] and humans(groups[1]) == [0.0, -3.0]
    assert "id" not in groups[0]["responses"][0] and notes == []


def test_oasst_skips_null_scores(tmp_path):
    row = {"prompt_id": "p", "prompt_text": "Q", "language": "en"}
    spec = write_rows(tmp_path / "o.jsonl", [
        {**row, "response_id": "a", "response_text": "A", "quality_score": 0.75},
        {**row, "response_id": "b", "response_text": "B", "quality_score": None},
        {**row, "response_id": "c", "response_text": "C", "quality_score": 0.25},
        {**row, "prompt_id": "q", "response_id": "d", "response_text": "D", "quality_score": None},
    ])
    groups, notes = load_judge_set(spec)
    assert groups == [{"id": "p", "prompt": "Q", "responses": [
        {"text": "A", "human": 0.75, "id": "a"}, {"text": "C", "human": 0.25, "id": "c"}]}]
    assert notes == ["2 rows without quality_score skipped"]


def test_llmbar(tmp_path):
    spec = write_rows(tmp_path / "l.jsonl", [
        {"input": "Q1", "output_1": "good", "output_2": "bad", "label": 1},
        {"input": "Q2", "output_1": "bad", "output_2": "good", "label": 2},
    ])
    groups, notes = load_judge_set(spec)
    assert groups[0] == {"id": "row 1", "prompt": "Q1", "responses": [
        {"text": "good", "human": 1.0}, {"text": "bad", "human": 0.0}]}
    assert humans(groups[1]) == [0.0, 1.0] and notes == []


def test_autoj_keeps_ties(tmp_path):
    spec = write_rows(tmp_path / "a.jsonl", [
        {"scenario": "s", "label": 0, "prompt": "Q1", "response 1": "good", "response 2": "bad"},
        {"scenario": "s", "label": 1, "prompt": "Q2", "response 1": "bad", "response 2": "good"},
        {"scenario": "s", "label": 2, "prompt": "Q3", "response 1": "same", "response 2": "same too"},
    ])
    groups, notes = load_judge_set(spec)
    assert [humans(g) for g in groups] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    assert notes == ["1 prompt whose responses all share one human value (ties) kept: "
                     "they enter no pairwise or per-prompt metric"]
    assert judge_metrics(groups)["pairs"] == 2


def test_empty_response_is_kept_and_noted(tmp_path):
    spec = write_rows(tmp_path / "l.jsonl", [
        {"input": "Q1", "output_1": "fine", "output_2": "ok", "label": 1},
        {"input": "Q2", "output_1": "answer", "output_2": "  ", "label": 1},
    ])
    groups, notes = load_judge_set(spec)
    assert len(groups) == 2 and notes == ["1 row with an empty response kept (row 2)"]


# --- errors ---

def test_missing_file(tmp_path):
    assert "judge set not found" in user_error(str(tmp_path / "nope.jsonl"))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    msg = user_error(str(path))
    assert str(path) in msg and "no rows" in msg


def test_bad_json_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "Q", "response": "A", "rank": 0}\n{oops\n', encoding="utf-8")
    assert f"{path}:2" in user_error(str(path))


def test_unknown_format_lists_fields_and_formats(tmp_path):
    msg = user_error(write_rows(tmp_path / "u.jsonl", [{"question": "Q", "answer": "A"}]))
    assert "row 1" in msg and "unknown judge-set format" in msg and "answer, question" in msg
    for fmt in ("ranked", "oasst", "llmbar", "autoj", "human_score or rank"):
        assert fmt in msg


def test_ranked_without_a_human_value_is_unknown(tmp_path):
    msg = user_error(write_rows(tmp_path / "u.jsonl", [{"prompt": "Q", "response": "A"}]))
    assert "fields found: prompt, response" in msg


@pytest.mark.parametrize("rows, expected", [
    ([{"input": "Q", "output_1": "a", "output_2": "b", "label": 1},
      {"input": "Q", "output_1": "a", "output_2": "b", "label": 3}],
     "row 2: field 'label' must be 1 or 2 (which output is better), got 3"),
    ([{"input": "Q", "output_1": "a", "output_2": "b", "label": "1"}], "row 1: field 'label' must be int, got str"),
    ([{"prompt": "Q", "response 1": "a", "response 2": "b", "label": 3}],
     "row 1: field 'label' must be 0, 1 or 2 (response 1 better, response 2 better, tie), got 3"),
    ([{"prompt": "Q", "response 1": "a", "response 2": "b", "label": True}], "row 1: field 'label' must be int"),
    ([{"input": "Q", "output_1": "a", "output_2": "b", "label": 1},
      {"input": " ", "output_1": "a", "output_2": "b", "label": 1}], "row 2: field 'input' is empty"),
    ([{"input": "Q", "output_1": "a", "output_2": "b", "label": 1}, {"input": "Q", "output_1": "a", "label": 1}],
     "row 2: missing field 'output_2'"),
    ([{"prompt": "Q", "response": "A", "human_score": 1}, {"prompt": "Q", "response": "B", "human_score": "high"}],
     "row 2: field 'human_score' must be int or float, got str"),
    ([{"prompt": "Q", "response": "A", "human_score": 1}, {"prompt": "Q", "response": "B", "human_score": None}],
     "row 2: field 'human_score' must be int or float, got NoneType"),
    ([{"prompt": "Q", "response": "A", "rank": 0}, {"prompt": "Q", "response": "B", "human_score": 1}],
     "row 2: missing field 'rank'"),
    ([{"prompt": "", "response": "A", "rank": 0}], "row 1: field 'prompt' is empty"),
    ([{"prompt_id": "p", "prompt": "Q", "response": "A", "rank": 0},
      {"prompt_id": "p", "prompt": "Other", "response": "B", "rank": 1}],
     "row 2: field 'prompt' differs from row 1, which has the same prompt_id 'p'"),
    ([{"prompt_id": "p", "prompt": "Q", "response": "A", "rank": 0}, {"prompt": "Q", "response": "B", "rank": 1}],
     "row 2: missing field 'prompt_id'"),
    ([{"prompt_id": "p", "prompt_text": "Q", "response_id": "a", "response_text": "A", "quality_score": "0.5"}],
     "row 1: field 'quality_score' must be int or float or NoneType, got str"),
    ([{"prompt": "Q1", "response": "A", "rank": 0}, {"prompt": "Q2", "response": "B", "rank": 0}],
     "no prompt has 2 or more responses"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, rows, expected):
    path = write_rows(tmp_path / "bad.jsonl", rows)
    msg = user_error(path)
    assert msg.startswith(path) and expected in msg


def test_non_finite_human_score(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"prompt": "Q", "response": "A", "human_score": NaN}\n', encoding="utf-8")
    assert f"{path} row 1: field 'human_score' must be a finite number" in user_error(str(path))


# --- shipped and shared data ---

def test_builtin():
    groups, notes = load_judge_set("builtin")
    assert (len(groups), sum(len(g["responses"]) for g in groups)) == (130, 459) and notes == []
    assert all("score" not in r and r["id"] for g in groups for r in g["responses"])
    perfect = [{**g, "responses": [{**r, "score": r["human"]} for r in g["responses"]]} for g in groups]
    assert judge_metrics(perfect)["pairwise_accuracy"] == 1.0


@pytest.mark.parametrize("name, n_groups, n_responses, notes", [
    ("llmbar/LLMBar_Natural.jsonl", 100, 200, []),
    ("llmbar/LLMBar_Adversarial_Neighbor.jsonl", 134, 268, []),
    ("llmbar/LLMBar_Adversarial_GPTInst.jsonl", 92, 184, []),
    ("llmbar/LLMBar_Adversarial_GPTOut.jsonl", 47, 94, []),
    ("llmbar/LLMBar_Adversarial_Manual.jsonl", 46, 92, []),
    ("llmbar/Processed_LLMEval2.jsonl", 193, 386, ["1 row with an empty response kept (row 166)"]),
    ("autoj/testdata_pairwise.jsonl", 1378, 2756, ["1 row with an empty response kept (row 560)",
                                                   "370 prompts whose responses all share one human value (ties) "
                                                   "kept: they enter no pairwise or per-prompt metric"]),
    ("oasst2_eft/oasst2_evaluation_fine_tuning.jsonl", 776, 2704, ["56 rows without quality_score skipped"]),
])
def test_shared_data(name, n_groups, n_responses, notes):
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    groups, got_notes = load_judge_set(str(path))
    assert (len(groups), sum(len(g["responses"]) for g in groups)) == (n_groups, n_responses)
    assert got_notes == notes
