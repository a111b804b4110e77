"""JSONL artifacts: atomic writes, and reads whose errors name the file, line and field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from selfreward.errors import UserError


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write all rows to a temporary name, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return count


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    rows = []
    with path.open("rb") as f:
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
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object per line")
            rows.append(row)
    return rows


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
