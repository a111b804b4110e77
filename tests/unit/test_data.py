"""data: builtin seed splits and user JSONL, validated row by row with errors naming file, row and field."""

import json

import pytest

from selfreward.data import load_eft, load_ift
from selfreward.errors import UserError
from selfreward.judges.rubric_parse import parse_score


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def user_error(fn, *args, **kw):
    with pytest.raises(UserError) as e:
        fn(*args, **kw)
    return str(e.value)


def test_builtin_ift():
    rows = load_ift("builtin")
    assert len(rows) > 300
    for r in rows:
        assert isinstance(r["prompt"], str) and r["prompt"].strip()
        assert isinstance(r["response"], str) and r["response"].strip()


@pytest.mark.parametrize("split", ["eft_train", "eft_eval"])
def test_builtin_eft(split):
    rows = load_eft("builtin", split)
    assert len(rows) > 100
    for r in rows:
        assert r["prompt"].strip() and r["response"].strip()
        assert parse_score(r["target"]) in {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


def test_builtin_eft_splits_do_not_share_examples():
    train = {(r["prompt"], r["response"]) for r in load_eft("builtin", "eft_train")}
    evals = {(r["prompt"], r["response"]) for r in load_eft("builtin", "eft_eval")}
    assert train.isdisjoint(evals)


def test_user_ift_and_extra_fields_kept(tmp_path):
    spec = write_rows(tmp_path / "ift.jsonl", [{"prompt": "p1", "response": "r1", "lang": "en"},
                                               {"prompt": "p2", "response": "r2"}])
    assert load_ift(spec) == [{"prompt": "p1", "response": "r1", "lang": "en"}, {"prompt": "p2", "response": "r2"}]


def test_missing_field_names_file_row_and_field(tmp_path):
    path = tmp_path / "ift.jsonl"
    spec = write_rows(path, [{"prompt": "p1", "response": "r1"}, {"prompt": "p2"}])
    assert user_error(load_ift, spec) == f"{path} row 2: missing field 'response'"


def test_wrong_typed_field(tmp_path):
    path = tmp_path / "ift.jsonl"
    spec = write_rows(path, [{"prompt": 42, "response": "r1"}])
    assert user_error(load_ift, spec) == f"{path} row 1: field 'prompt' must be str, got int"
    spec = write_rows(path, [{"prompt": "p", "response": None}])
    assert user_error(load_ift, spec) == f"{path} row 1: field 'response' must be str, got NoneType"


@pytest.mark.parametrize("value", ["", "   \n\t"])
def test_empty_string_field(tmp_path, value):
    path = tmp_path / "ift.jsonl"
    spec = write_rows(path, [{"prompt": "p1", "response": "r1"}, {"prompt": "p", "response": "r"},
                             {"prompt": value, "response": "r3"}])
    assert user_error(load_ift, spec) == f"{path} row 3: field 'prompt' is empty"


def test_eft_target_without_score_line(tmp_path):
    path = tmp_path / "eft.jsonl"
    spec = write_rows(path, [{"prompt": "p", "response": "r", "target": "Good answer.\nScore: 4"},
                             {"prompt": "p", "response": "r", "target": "A fine answer, four points."}])
    msg = user_error(load_eft, spec, "eft_train")
    assert msg == f"{path} row 2: field 'target' must end with a line 'Score: N' with N in 0-5"


@pytest.mark.parametrize("target", ["Score: 7", "Score: 8/10", "Score: 2\nScore: 3"])
def test_eft_target_with_unusable_score(tmp_path, target):
    spec = write_rows(tmp_path / "eft.jsonl", [{"prompt": "p", "response": "r", "target": target}])
    assert "field 'target'" in user_error(load_eft, spec, "eft_train")


def test_eft_missing_target(tmp_path):
    path = tmp_path / "eft.jsonl"
    spec = write_rows(path, [{"prompt": "p", "response": "r"}])
    assert user_error(load_eft, spec, "eft_train") == f"{path} row 1: missing field 'target'"


def test_user_eft_ok(tmp_path):
    rows = [{"prompt": "p", "response": "r", "target": "Relevant.\nScore: 1"}]
    assert load_eft(write_rows(tmp_path / "eft.jsonl", rows), "eft_train") == rows


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    assert user_error(load_ift, str(path)) == f"data file not found: {path} (data.ift)"
    assert user_error(load_eft, str(path), "eft_train") == f"data file not found: {path} (data.eft_train)"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    assert user_error(load_ift, str(path)) == f"{path}: no rows (data.ift)"


def test_bad_json_line_in_data(tmp_path):
    path = tmp_path / "ift.jsonl"
    path.write_text('{"prompt": "p", "response": "r"}\n{oops}\n', encoding="utf-8")
    assert user_error(load_ift, str(path)).startswith(f"{path}:2: not valid JSON")


def test_limit_with_seed_is_deterministic():
    full = load_ift("builtin")
    a = load_ift("builtin", limit=10, seed=1)
    b = load_ift("builtin", limit=10, seed=1)
    c = load_ift("builtin", limit=10, seed=2)
    assert a == b
    assert len(a) == 10 and len(c) == 10
    assert a != c
    assert all(r in full for r in a)
    assert a != full[:10]  # shuffled before cutting, not the first rows of the file


def test_limit_at_or_above_size_returns_all_in_order(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(5)]
    spec = write_rows(tmp_path / "ift.jsonl", rows)
    assert load_ift(spec, limit=5, seed=3) == rows
    assert load_ift(spec, limit=99, seed=3) == rows
    assert load_ift(spec, limit=None) == rows


def test_limit_on_user_eft(tmp_path):
    rows = [{"prompt": f"p{i}", "response": "r", "target": f"Score: {i % 6}"} for i in range(20)]
    spec = write_rows(tmp_path / "eft.jsonl", rows)
    got = load_eft(spec, "eft_train", limit=7, seed=0)
    assert got == load_eft(spec, "eft_train", limit=7, seed=0)
    assert len(got) == 7 and all(r in rows for r in got)


def test_hf_dataset_spec_loads_a_local_dataset_folder(tmp_path):
    """`hf:NAME[:SPLIT]` goes through datasets.load_dataset; a local folder of JSONL files works offline."""
    folder = tmp_path / "my_ift"
    folder.mkdir()
    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}.", "source": "mine"} for i in range(3)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_ift(f"hf:{folder}:train")
    assert [(r["prompt"], r["response"]) for r in loaded] == [(r["prompt"], r["response"]) for r in rows]


def test_hf_dataset_spec_that_cannot_load_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as e:
        load_ift(f"hf:{tmp_path / 'missing'}")
    assert str(e.value).startswith(f"could not load Hugging Face dataset '{tmp_path / 'missing'}' split 'train'")


@pytest.mark.parametrize("target", ["Good.\nScore: 4\nHope this helps!", "Score: 4\n\nP.S. five would be too much",
                                    "Score:\n4", "Score: 2\nOn reflection:\nScore: 3"])
def test_eft_target_must_end_with_its_one_score_line(tmp_path, target):
    """The README's rule: the target ends with its 'Score: N' line (text after it used to be accepted)."""
    path = tmp_path / "eft.jsonl"
    spec = write_rows(path, [{"prompt": "p", "response": "r", "target": "Fine.\nScore: 3"},
                             {"prompt": "p", "response": "r", "target": target}])
    assert user_error(load_eft, spec, "eft_train") == (f"{path} row 2: field 'target' must end with a line "
                                                       "'Score: N' with N in 0-5")


@pytest.mark.parametrize("target", ["Relevant.\nScore: 4\n\n", "**Score: 4**", "Total: 1+1+1 = 3\nScore: 3"])
def test_eft_target_ending_with_a_score_line_is_accepted(tmp_path, target):
    rows = [{"prompt": "p", "response": "r", "target": target}]
    assert load_eft(write_rows(tmp_path / "eft.jsonl", rows), "eft_train") == rows
