"""Seed data: the shipped IFT/EFT splits or the user's own JSONL / Hugging Face dataset, validated row by row.

IFT rows:  {"prompt": str, "response": str}
EFT rows:  {"prompt": str, "response": str, "target": str}   target = a judgment whose last non-empty line is
           its one score statement, "Score: N" with N in 0-5 (text after it, or a second score statement before it,
           would teach the model a judgment that does not end with its score)
Extra fields are kept and ignored.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Any

from selfreward.errors import UserError
from selfreward.judges.rubric_parse import parse_score, score_label_end
from selfreward.records import check_fields, read_jsonl

IFT_FIELDS = {"prompt": str, "response": str}
EFT_FIELDS = {"prompt": str, "response": str, "target": str}
BUILTIN = {"ift": "ift.jsonl", "eft_train": "eft_train.jsonl", "eft_eval": "eft_eval.jsonl"}


def load_ift(spec: str, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    rows = _load(spec, "ift", IFT_FIELDS)
    return _subset(rows, limit, seed)


def load_eft(spec: str, split: str, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    rows = _load(spec, split, EFT_FIELDS)
    for i, row in enumerate(rows, 1):
        if not target_ends_with_score(row["target"]):
            raise UserError(f"{_name(spec, split)} row {i}: field 'target' must end with a line 'Score: N' "
                            "with N in 0-5")
    return _subset(rows, limit, seed)


def target_ends_with_score(target: str) -> bool:
    """The target's last non-empty line is a readable score statement (0-5), and the only one in the target."""
    lines = [line for line in target.splitlines() if line.strip()]
    if not lines or parse_score(lines[-1]) is None or score_label_end(lines[-1]) is None:
        return False
    return score_label_end("\n".join(lines[:-1])) is None


def _subset(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    if limit is None or limit >= len(rows):
        return rows
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def _name(spec: str, split: str) -> str:
    return f"builtin {BUILTIN[split]}" if spec == "builtin" else spec


def _load(spec: str, split: str, fields: dict[str, type]) -> list[dict[str, Any]]:
    if spec == "builtin":
        with resources.as_file(resources.files("selfreward.data").joinpath("seed", BUILTIN[split])) as path:
            rows = read_jsonl(path)
        where = f"builtin {BUILTIN[split]}"
    elif spec.startswith("hf:"):
        rows = _load_hf(spec[3:])
        where = spec
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UserError(f"data file not found: {path} (data.{split})")
        rows = read_jsonl(path)
        where = str(path)
    if not rows:
        raise UserError(f"{where}: no rows (data.{split})")
    for i, row in enumerate(rows, 1):
        check_fields(row, fields, f"{where} row {i}")
        for name in fields:
            if not row[name].strip():
                raise UserError(f"{where} row {i}: field '{name}' is empty")
    return rows


def _load_hf(ref: str) -> list[dict[str, Any]]:
    name, _, split = ref.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # datasets raises many types for a missing/unreachable dataset
        raise UserError(f"could not load Hugging Face dataset '{name}' split '{split or 'train'}': "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return [dict(r) for r in ds]
