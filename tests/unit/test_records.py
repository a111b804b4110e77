"""records: atomic JSONL/JSON writes and reads whose errors name file, line and field."""

import json

import pytest

from selfreward.errors import UserError
from selfreward.records import check_fields, read_jsonl, write_json, write_jsonl

ROWS = [{"id": 1, "text": "héllo — 世界 🙂", "score": 4.5, "none": None},
        {"id": 2, "text": "line\nbreak \"quoted\"", "nested": {"a": [1, 2]}}]


def test_write_jsonl_round_trip_and_count(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"  # parent is created
    assert write_jsonl(path, iter(ROWS)) == 2
    assert read_jsonl(path) == ROWS
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.jsonl"]  # no .tmp left behind


def test_write_jsonl_is_utf8_not_escaped_and_one_object_per_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, ROWS)
    raw = path.read_bytes().decode("utf-8")
    assert "世界 🙂" in raw
    assert raw.count("\n") == 2 and raw.endswith("\n")
    assert json.loads(raw.splitlines()[1]) == ROWS[1]


def test_write_jsonl_replaces_existing_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, ROWS)
    assert write_jsonl(path, [{"x": 1}]) == 1
    assert read_jsonl(path) == [{"x": 1}]


def test_write_jsonl_empty(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, []) == 0
    assert path.read_text() == ""
    assert read_jsonl(path) == []


def test_write_jsonl_failure_keeps_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"old": True}])

    def rows():
        yield {"new": 1}
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"old": True}]  # a reader never sees half a file


def test_write_json_atomic(tmp_path):
    path = tmp_path / "a" / "m.json"
    write_json(path, {"k": "ü", "n": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"k": "ü", "n": [1, 2]}
    assert "ü" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_read_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_read_jsonl_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n', encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}:3: not valid JSON (")


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "3", "null"])
def test_read_jsonl_non_object_line(tmp_path, line):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_jsonl(path)
    assert str(e.value) == f"{path}:2: expected a JSON object per line"


def test_read_jsonl_missing_file(tmp_path):
    path = tmp_path / "missing.jsonl"
    with pytest.raises(UserError) as e:
        read_jsonl(path)
    assert str(e.value) == f"file not found: {path}"


def test_read_jsonl_directory_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_jsonl(tmp_path)


def test_read_jsonl_non_utf8_is_a_user_error(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"a": "ok"}\n{"a": "café"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=f"{path}:2"):
        read_jsonl(path)


SPEC = {"prompt": str, "n": int, "score": (int, float)}


def test_check_fields_ok():
    check_fields({"prompt": "p", "n": 3, "score": 2.5, "extra": object()}, SPEC, "f.jsonl row 1")
    check_fields({"prompt": "p", "n": 3, "score": 2}, SPEC, "f.jsonl row 1")


def test_check_fields_missing():
    with pytest.raises(UserError) as e:
        check_fields({"prompt": "p", "score": 1.0}, SPEC, "f.jsonl row 4")
    assert str(e.value) == "f.jsonl row 4: missing field 'n'"


def test_check_fields_wrong_type():
    with pytest.raises(UserError) as e:
        check_fields({"prompt": 5, "n": 1, "score": 1.0}, SPEC, "f.jsonl row 2")
    assert str(e.value) == "f.jsonl row 2: field 'prompt' must be str, got int"


def test_check_fields_none_is_wrong_type():
    with pytest.raises(UserError) as e:
        check_fields({"prompt": None, "n": 1, "score": 1.0}, SPEC, "w")
    assert str(e.value) == "w: field 'prompt' must be str, got NoneType"


def test_check_fields_bool_is_not_int():
    with pytest.raises(UserError) as e:
        check_fields({"prompt": "p", "n": True, "score": 1.0}, SPEC, "w")
    assert str(e.value) == "w: field 'n' must be int, got bool"
    with pytest.raises(UserError) as e:
        check_fields({"prompt": "p", "n": 1, "score": False}, SPEC, "w")
    assert str(e.value) == "w: field 'score' must be int or float, got bool"


def test_check_fields_bool_allowed_when_asked():
    check_fields({"flag": True}, {"flag": bool}, "w")
    check_fields({"flag": False}, {"flag": (bool, int)}, "w")
