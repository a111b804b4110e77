"""JSONL artifacts: atomic writes, and reads whose errors name the file, line and field.

Every write goes to a temporary name first and is renamed into place, so a reader (or a run killed mid-write)
never sees half a file. A write that fails (a full disk, a read-only directory) removes its temporary file and
raises a UserError naming the file. `on_first_write` lets the pipeline clear a stage's done-marker only once the
stage starts writing, so a stage that fails on bad input leaves its earlier result valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selfreward import faults
from selfreward.errors import UserError

_first_write: list[Callable[[], None]] = []


@contextmanager
def on_first_write(callback: Callable[[], None]):
    """Call `callback` once, right before the first write of any artifact inside the block (if there is one)."""
    _first_write.append(callback)
    try:
        yield
    finally:
        if callback in _first_write:
            _first_write.remove(callback)


def about_to_write() -> None:
    """Run the pending `on_first_write` callbacks; every writer calls this before it touches a file."""
    while _first_write:
        _first_write.pop(0)()


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write all rows to a temporary name, then rename: a reader never sees half a file."""
    path = Path(path)
    if faults.active():  # the "jsonl" fault point sits after half of the rows
        rows = list(rows)
    half = len(rows) // 2 if isinstance(rows, list) and faults.active() else None
    about_to_write()
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                if count == half:
                    f.flush()
                    faults.point("jsonl")
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            if half == count:  # no rows
                faults.point("jsonl")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {path}: {_reason(e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", point="json")


def write_text(path: Path, text: str | bytes, point: str | None = None) -> None:
    """Atomically replace `path` with `text` (bytes are written as they are)."""
    path = Path(path)
    about_to_write()
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        if point:
            faults.point(point)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {path}: {_reason(e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _reason(e: OSError) -> str:
    return (e.strerror or str(e) or type(e).__name__).strip().splitlines()[0]


def read_text(path: Path, what: str = "") -> str:
    """A UTF-8 text file, or a UserError naming it (missing, unreadable, not UTF-8). `what`: a hint such as
    '(judge.template)' appended to the message."""
    path = Path(path)
    suffix = f" {what}" if what else ""
    if not path.is_file():
        raise UserError(f"file not found: {path}{suffix}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"could not read {path}: {_reason(e)}{suffix}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text{suffix}") from None


def read_json(path: Path) -> Any:
    """A JSON file's value, or a UserError naming the file."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}: line {e.lineno} column {e.colno}); fix or delete the "
                        "file") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply); fix or delete the file") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    rows = []
    try:
        f = path.open("rb")
    except OSError as e:
        raise UserError(f"could not read {path}: {_reason(e)}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise UserError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object per line")
            if "\\u" in line.lower() and _has_lone_surrogate(row):
                # "\ud800" reads as a Python string that can never be written back as UTF-8
                raise UserError(f"{path}:{lineno}: a \\u escape is half of a UTF-16 surrogate pair, not a character")
            rows.append(row)
    return rows


def field_names(row: dict[str, Any]) -> str:
    """A row's keys for a one-line message, sorted; a key that would break the line (it is the file's text) as its
    repr; 'none' for an empty row."""
    return ", ".join(k if k.isprintable() else repr(k) for k in sorted(row)) or "none"


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_fields(row: dict[str, Any], spec: dict[str, type | tuple[type, ...]], where: str) -> None:
    """Raise a UserError naming `where` and the field if a required field is missing or of the wrong type."""
    for name, types_ in spec.items():
        if name not in row:
            raise UserError(f"{where}: missing field '{name}'")
        value = row[name]
        if isinstance(value, bool) and bool not in _as_tuple(types_) or not isinstance(value, types_):
            want = " or ".join(t.__name__ for t in _as_tuple(types_))
            raise UserError(f"{where}: field '{name}' must be {want}, got {type(value).__name__}")


def _as_tuple(types_: type | tuple[type, ...]) -> tuple[type, ...]:
    return types_ if isinstance(types_, tuple) else (types_,)
