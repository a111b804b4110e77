"""Human-ranked judge-evaluation sets, read into the groups that `selfreward.judges.metrics` scores.

A group is one prompt and its responses, each with a human value (higher is better) and, when the source has
one, the response's id:
    {"id": str, "prompt": str, "responses": [{"text": str, "human": float, "id": str}, ...]}
The judge's scores are not here: the caller adds a "score" to each response.

The format is detected from the fields of the first row; every later row must then have that format's fields.
- builtin (= builtin:eft_eval) and builtin:eft_train: the shipped EFT splits (seed/eft_*.jsonl), read as the
  ranked format; builtin:llmbar-natural: LLMBar Natural's 100 pairs (bench/LLMBar_Natural.jsonl, MIT). The EFT
  splits' `score` field is the score in the EFT target, not a human value, and is not read.
- ranked (ours): prompt, response, and either human_score (higher is better) or rank (lower is better, 0 = best;
  human = -rank); human_score is used when the first row has both. Rows are grouped by prompt_id when the first
  row has one, else by identical prompt text. An `id` field is kept as the response id.
- oasst: the Open Assistant export: prompt_id, prompt_text, response_id, response_text, quality_score. Rows
  whose quality_score is null carry no human judgment: they are skipped, and counted in the notes.
- llmbar: input, output_1, output_2, label (1 or 2: which output is better) -> a group of two, human 1.0 / 0.0.
- autoj: prompt, "response 1", "response 2", label (0: response 1 better, 1: response 2 better, 2: tie -> both
  0.5). Ties are kept: they enter no pairwise metric but show in the counts.
Groups are identified by prompt_id where the source has one, else as "row N" (the first row, 1-based).

`load_judge_set` returns (groups, notes). Notes are one-line strings for a person reading the results: every
row or group not loaded and why (null quality_score; prompts left with fewer than 2 responses), responses with
empty text (kept: an empty answer is a real, bad answer, and the published LLMBar and Auto-J sets hold one
each), and groups whose responses all tie (no order to recover). Anything else wrong with the data raises a
UserError naming the file, row and field.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

from selfreward.errors import UserError
from selfreward.records import check_fields, field_names, read_jsonl

NUMBER = (int, float)
FORMATS = {  # name -> the fields that identify it; checked in this order
    "llmbar": ("input", "output_1", "output_2", "label"),
    "autoj": ("prompt", "response 1", "response 2", "label"),
    "oasst": ("prompt_id", "prompt_text", "response_id", "response_text", "quality_score"),
    "ranked": ("prompt", "response"),
}
_RESPONSE_FIELDS = {"llmbar": ("output_1", "output_2"), "autoj": ("response 1", "response 2"),
                    "oasst": ("response_text",), "ranked": ("response",)}
_ACCEPTED = ("ranked (prompt, response, human_score or rank, optional prompt_id and id); "
             "oasst (prompt_id, prompt_text, response_id, response_text, quality_score); "
             "llmbar (input, output_1, output_2, label); autoj (prompt, response 1, response 2, label)")


def load_judge_set(spec: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows, where = _read(spec)
    fmt = _detect(rows[0], where)
    notes: list[str] = []
    if fmt in ("llmbar", "autoj"):
        groups = [_pair(row, fmt, f"{where} row {i}", i) for i, row in enumerate(rows, 1)]
    else:
        groups = _ranked(rows, fmt, where, notes)
    empty = [i for i, row in enumerate(rows, 1)
             if any(_blank(row[f]) for f in _RESPONSE_FIELDS[fmt]) and row.get("quality_score", 0) is not None]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        notes.append(f"{_n(len(empty), 'row')} with an empty response kept (row {shown})")
    kept = [g for g in groups if len(g["responses"]) >= 2]
    if len(kept) < len(groups):
        notes.append(f"{_n(len(groups) - len(kept), 'prompt')} with fewer than 2 responses dropped")
    if not kept:
        raise UserError(f"{where}: no prompt has 2 or more responses to compare; a judge set needs at least one")
    tied = sum(len({r["human"] for r in g["responses"]}) < 2 for g in kept)
    if tied:
        notes.append(f"{_n(tied, 'prompt')} whose responses all share one human value (ties) kept: "
                     "they enter no pairwise or per-prompt metric")
    return kept, notes


def _read(spec: str) -> tuple[list[dict[str, Any]], str]:
    builtin = {"builtin": "seed/eft_eval.jsonl", "builtin:eft_eval": "seed/eft_eval.jsonl",
               "builtin:eft_train": "seed/eft_train.jsonl", "builtin:llmbar-natural": "bench/LLMBar_Natural.jsonl"}
    if spec in builtin:
        with resources.as_file(resources.files("selfreward.data").joinpath(builtin[spec])) as path:
            return read_jsonl(path), f"builtin {Path(builtin[spec]).name}"
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"judge set not found: {path} (give a JSONL file, or one of: {', '.join(builtin)})")
    rows = read_jsonl(path)
    if not rows:
        raise UserError(f"{path}: no rows; a judge set needs JSON objects, one per line")
    return rows, str(path)


def _detect(row: dict[str, Any], where: str) -> str:
    for fmt, fields in FORMATS.items():
        if all(f in row for f in fields) and (fmt != "ranked" or "human_score" in row or "rank" in row):
            return fmt
    raise UserError(f"{where} row 1: unknown judge-set format; fields found: {field_names(row)}; "
                    f"accepted: {_ACCEPTED}")


def _pair(row: dict[str, Any], fmt: str, where: str, index: int) -> dict[str, Any]:
    prompt, first, second = FORMATS[fmt][:3]
    check_fields(row, {prompt: str, first: str, second: str, "label": int}, where)
    _require_text(row, prompt, where)
    human = _pair_human(row["label"], fmt, where)
    return {"id": f"row {index}", "prompt": row[prompt],
            "responses": [{"text": row[first], "human": human[0]}, {"text": row[second], "human": human[1]}]}


def _pair_human(label: int, fmt: str, where: str) -> tuple[float, float]:
    table = {"llmbar": {1: (1.0, 0.0), 2: (0.0, 1.0)},
             "autoj": {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (0.5, 0.5)}}[fmt]
    if label not in table:
        meaning = ("1 or 2 (which output is better)" if fmt == "llmbar"
                   else "0, 1 or 2 (response 1 better, response 2 better, tie)")
        raise UserError(f"{where}: field 'label' must be {meaning}, got {label}")
    return table[label]


def _ranked(rows: list[dict[str, Any]], fmt: str, where: str, notes: list[str]) -> list[dict[str, Any]]:
    first = rows[0]
    if fmt == "oasst":
        prompt, text, value, key, rid = "prompt_text", "response_text", "quality_score", "prompt_id", "response_id"
    else:
        prompt, text, rid = "prompt", "response", "id"
        value = "human_score" if "human_score" in first else "rank"
        key = "prompt_id" if "prompt_id" in first else None
    groups: dict[str, dict[str, Any]] = {}
    skipped = 0
    for i, row in enumerate(rows, 1):
        at = f"{where} row {i}"
        spec: dict[str, Any] = {prompt: str, text: str, value: NUMBER + ((type(None),) if fmt == "oasst" else ())}
        spec.update({key: (str, int)} if key else {})
        spec.update({rid: (str, int)} if fmt == "oasst" or rid in row else {})
        check_fields(row, spec, at)
        if row[value] is None:
            skipped += 1
            continue
        if not math.isfinite(row[value]):
            raise UserError(f"{at}: field '{value}' must be a finite number, got {row[value]}")
        _require_text(row, prompt, at)
        group_key = str(row[key]) if key else row[prompt]
        group = groups.setdefault(group_key, {"id": group_key if key else f"row {i}", "prompt": row[prompt],
                                              "responses": [], "row": i})
        if group["prompt"] != row[prompt]:
            raise UserError(f"{at}: field '{prompt}' differs from row {group['row']}, which has the same "
                            f"{key} '{group_key}'; give each prompt its own {key}")
        human = float(row[value]) if value != "rank" else 0.0 - row[value]
        response = {"text": row[text], "human": human}
        response.update({"id": str(row[rid])} if rid in row else {})
        group["responses"].append(response)
    if skipped:
        notes.append(f"{_n(skipped, 'row')} without {value} skipped")
    return [{k: v for k, v in g.items() if k != "row"} for g in groups.values()]


def _require_text(row: dict[str, Any], field: str, where: str) -> None:
    if not row[field].strip():
        raise UserError(f"{where}: field '{field}' is empty; fill it in or remove the row")


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
