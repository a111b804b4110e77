#!/usr/bin/env python
"""Re-parse the raw judge texts of judgments.jsonl files with the old and the new score parser, and say what changes.

    python scripts/reparse_judgments.py RUN/iter1/judgments.jsonl RUN/eval/judge-M1.judgments.jsonl ...

Every row with a "raw" list (or string) of judge texts counts; each text is one judgment. Printed per file and in
total: judgments, how many parse with the old and the new parser, how many values change and in which direction
(None->number, number->None, up, down), and a few examples of each.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

try:
    from selfreward.judges.rubric_parse import parse_score as new_parse_score
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from selfreward.judges.rubric_parse import parse_score as new_parse_score

# ---- the old parser, verbatim from src/selfreward/judge.py (before selfreward.judges.rubric_parse) ----
MAX_SCORE = 5
# "Score: 4", "score:4", "**Score:** 4.5", "Score: 4/5", "Score: 4 out of 5"
_SCORE = re.compile(
    r"\bscore[\s*_]*[:：][\s*_]*(-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)


def old_parse_score(text: str) -> float | None:
    """The score a judgment ends with, or None: no score, conflicting scores, or outside 0-5."""
    values = set()
    for number, denominator in _SCORE.findall(text):
        if denominator and float(denominator) != MAX_SCORE:
            return None
        values.add(float(number))
    if len(values) != 1:
        return None
    (value,) = values
    return value if 0 <= value <= MAX_SCORE else None
# ---- end of the old parser ----

DIRECTIONS = ("None->number", "number->None", "up", "down")


def judge_texts(path: Path):
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            raw = json.loads(line).get("raw")
            if isinstance(raw, str):
                yield raw
            elif isinstance(raw, list):
                yield from (r for r in raw if isinstance(r, str))


def direction(old: float | None, new: float | None) -> str | None:
    if old == new:
        return None
    if old is None:
        return "None->number"
    if new is None:
        return "number->None"
    return "up" if new > old else "down"


def compare(texts) -> dict:
    stats = {"judgments": 0, "old_parsed": 0, "new_parsed": 0, "changed": 0, "same_value": 0,
             **{d: 0 for d in DIRECTIONS}}
    examples = defaultdict(list)
    for text in texts:
        old, new = old_parse_score(text), new_parse_score(text)
        stats["judgments"] += 1
        stats["old_parsed"] += old is not None
        stats["new_parsed"] += new is not None
        d = direction(old, new)
        if d is None:
            stats["same_value"] += 1
            continue
        stats["changed"] += 1
        stats[d] += 1
        examples[d].append((old, new, text))
    return {"stats": stats, "examples": examples}


def report(name: str, result: dict, n_examples: int, width: int) -> None:
    s = result["stats"]
    n = s["judgments"] or 1
    print(f"== {name}")
    print(f"judgments {s['judgments']}  parsed: old {s['old_parsed']} ({s['old_parsed'] / n:.1%}), "
          f"new {s['new_parsed']} ({s['new_parsed'] / n:.1%})")
    print(f"changed {s['changed']}: " + ", ".join(f"{d} {s[d]}" for d in DIRECTIONS))
    for d in DIRECTIONS:
        for old, new, text in result["examples"][d][:n_examples]:
            shown = text if len(text) <= width else "..." + text[-width:]
            print(f"  [{d}] old={old} new={new}: {json.dumps(shown, ensure_ascii=False)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="judgments.jsonl files (rows with a 'raw' list)")
    ap.add_argument("--examples", type=int, default=3, help="examples shown per direction (default 3)")
    ap.add_argument("--width", type=int, default=240, help="characters shown of each example's end (default 240)")
    args = ap.parse_args(argv)
    everything = []
    for path in args.files:
        texts = list(judge_texts(path))
        everything += texts
        report(str(path), compare(texts), args.examples, args.width)
    if len(args.files) > 1:
        report("all files", compare(everything), 0, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
