"""Prompt sets for head-to-head comparison: {id, instruction, reference, later_turns} rows.

builtin:vicuna   the 80 Vicuna-bench questions shipped in data/bench (FastChat, Apache-2.0)
PATH             a JSONL file (or a JSON array, as AlpacaEval writes model_outputs.json) whose rows carry the
                 prompt as `instruction`, `prompt` or `turns` (a list: the first turn is used, since a comparison
                 is single-turn, and `later_turns` counts what was left out). An `output` (AlpacaEval) or
                 `reference` field becomes the row's reference answer.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from selfreward.errors import UserError
from selfreward.records import field_names, read_jsonl

BUILTIN = {"vicuna": "vicuna_question.jsonl"}
_PROMPT_FIELDS = ("instruction", "prompt", "turns")


def load_prompt_set(spec: str) -> list[dict[str, Any]]:
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if name not in BUILTIN:
            raise UserError(f"unknown prompt set '{spec}'; shipped: {', '.join('builtin:' + n for n in BUILTIN)}")
        path = Path(str(resources.files("selfreward.data").joinpath("bench", BUILTIN[name])))
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UserError(f"prompt set not found: {spec} (a JSONL file, or builtin:vicuna)")
    rows = [_row(raw, i, f"{spec} row {i}") for i, raw in enumerate(_read(path), 1)]
    if not rows:
        raise UserError(f"prompt set {spec} has no rows")
    return rows


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.read_bytes().lstrip().startswith(b"["):
        return read_jsonl(path)
    try:
        rows = json.loads(path.read_bytes())
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: expected a JSON array of objects")
    return rows


def _row(raw: dict[str, Any], index: int, where: str) -> dict[str, Any]:
    field = next((f for f in _PROMPT_FIELDS if f in raw), None)
    if field is None:
        raise UserError(f"{where}: no prompt field; expected one of {', '.join(_PROMPT_FIELDS)} "
                        f"(fields found: {field_names(raw)})")
    value = raw[field]
    turns = value if field == "turns" else [value]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise UserError(f"{where}: field '{field}' must be {'a list of strings' if field == 'turns' else 'a string'}")
    if not turns[0].strip():
        raise UserError(f"{where}: field '{field}' is empty")
    reference = raw.get("output", raw.get("reference"))
    if reference is not None and not isinstance(reference, str):
        raise UserError(f"{where}: field '{'output' if 'output' in raw else 'reference'}' must be a string")
    key = raw.get("id", raw.get("question_id", raw.get("key", index)))
    return {"id": str(key), "instruction": turns[0], "reference": reference, "later_turns": len(turns) - 1}
