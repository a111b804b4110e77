"""The judge stage's output checked against the candidates it judged, before anything is built on it (pure).

judgments.jsonl holds one row per candidate: {"candidate_id", "prompt_id", "score", ...}. The score is null (the
candidate could not be scored) or a finite number in the range of the source that wrote the row:

    no "source" field, or "rubric"   the 0-5 rubric (a mean of sampled judgments, or an expected score)
    any other source                 any finite number (pairwise win-probabilities in [0, 1], implicit rewards
                                     beta * log-ratio on the whole real line, ...)

An ensemble row may also carry "sources": {name: {"score": ...}, ...}, each score checked the same way under its
own name.

A string "3.5", NaN, infinity, a duplicate or unknown candidate id, a prompt id that disagrees with the candidate's,
or a candidate without a judgment is a UserError naming the file, the row (1-based, as read_jsonl returns them)
and the field, before any pair is built or any old result removed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfreward.errors import UserError

RUBRIC_SOURCES = (None, "rubric")  # rows whose score is on the 0-5 rubric
RUBRIC_MIN, RUBRIC_MAX = 0, 5


def check_judgments(candidates: list[Any], judgments: list[Any], where: str | Path,
                    candidates_where: str | Path = "candidates") -> None:
    """Raise a UserError naming `where` (the judgments file) or `candidates_where` (the candidates file), the row
    and the field, unless every candidate has exactly one judgment row that matches it (see the module doc)."""
    rows_of: dict[Any, int] = {}  # candidate id -> its row in the candidates (1-based)
    for i, cand in enumerate(candidates, 1):
        at = f"{candidates_where} row {i}"
        _require_object(cand, at)
        for name in ("id", "prompt_id"):
            _require_id(cand, name, at)
        for name in ("prompt", "response"):
            if name not in cand:
                raise UserError(f"{at}: missing field '{name}'")
            if not isinstance(cand[name], str):
                raise UserError(f"{at}: field '{name}' must be str, got {type(cand[name]).__name__}")
        cid = cand["id"]
        if cid in rows_of:
            raise UserError(f"{at}: field 'id': candidate {cid!r} appears twice (first in row {rows_of[cid]})")
        rows_of[cid] = i

    judged: dict[Any, int] = {}  # candidate id -> its row in the judgments
    for i, row in enumerate(judgments, 1):
        at = f"{where} row {i}"
        _require_object(row, at)
        for name in ("candidate_id", "prompt_id"):
            _require_id(row, name, at)
        if "score" not in row:
            raise UserError(f"{at}: missing field 'score' (null for a candidate that could not be scored)")
        cid = row["candidate_id"]
        if cid not in rows_of:
            raise UserError(f"{at}: field 'candidate_id': {cid!r} is not a candidate of {candidates_where}")
        if cid in judged:
            raise UserError(f"{at}: field 'candidate_id': candidate {cid!r} is judged twice (first in row "
                            f"{judged[cid]})")
        judged[cid] = i
        cand = candidates[rows_of[cid] - 1]
        if row["prompt_id"] != cand["prompt_id"]:
            raise UserError(f"{at}: field 'prompt_id' is {row['prompt_id']!r}, but candidate {cid!r} answers "
                            f"prompt {cand['prompt_id']!r} ({candidates_where} row {rows_of[cid]})")
        source = row.get("source")
        if source is not None and not isinstance(source, str):
            raise UserError(f"{at}: field 'source' must be str (rubric, pairwise, implicit, ...), got "
                            f"{type(source).__name__}")
        _check_score(row["score"], source, at)
        if "sources" in row:
            _check_sources(row["sources"], at)

    unjudged = [cid for cid in rows_of if cid not in judged]
    if unjudged:
        first = unjudged[0]
        raise UserError(f"{candidates_where} row {rows_of[first]}: candidate {first!r} has no judgment row in "
                        f"{where} ({len(unjudged)} of {len(rows_of)} candidates have none); redo the judge stage")


def _check_score(score: Any, source: str | None, at: str) -> None:
    if score is None:
        return
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise UserError(f"{at}: field 'score' must be a number or null, got {type(score).__name__} {_show(score)}")
    if not math.isfinite(score):
        raise UserError(f"{at}: field 'score' must be a finite number or null, got {score}")
    if source in RUBRIC_SOURCES and not RUBRIC_MIN <= score <= RUBRIC_MAX:
        raise UserError(f"{at}: field 'score' is {score}, outside the rubric's {RUBRIC_MIN}-{RUBRIC_MAX} (rows "
                        "of another reward source name it in a 'source' field)")


def _check_sources(sources: Any, at: str) -> None:
    if not isinstance(sources, dict):
        raise UserError(f"{at}: field 'sources' must be an object {{source: {{\"score\": ...}}}}, got "
                        f"{type(sources).__name__}")
    for name, part in sources.items():
        if not isinstance(part, dict) or "score" not in part:
            raise UserError(f"{at}: field 'sources.{name}' must be an object with a 'score'")
        _check_score(part["score"], name, f"{at} (sources.{name})")


def _require_object(row: Any, at: str) -> None:
    if not isinstance(row, dict):
        raise UserError(f"{at}: expected a JSON object, got {type(row).__name__}")


def _require_id(row: dict, name: str, at: str) -> None:
    """Ids are ints or strings: a float or bool id would silently equal another (1.0 == 1 == True)."""
    if name not in row:
        raise UserError(f"{at}: missing field '{name}'")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{at}: field '{name}' must be an int or str id, got {type(value).__name__} {_show(value)}")


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
