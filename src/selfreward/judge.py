"""The judge as data plus pure functions: a rubric template, a renderer, a score parser, an aggregator.

The parser returns None for anything it cannot read. It never falls back to a number: an unparseable judgment
that became 0 would turn into a "rejected" answer and teach the model something false.
"""

from __future__ import annotations

import re
import statistics
from importlib import resources
from pathlib import Path

from selfreward.errors import UserError

MAX_SCORE = 5
_PLACEHOLDER = re.compile(r"\{(instruction|response)\}")
# "Score: 4", "score:4", "**Score:** 4.5", "Score: 4/5", "Score: 4 out of 5"
_SCORE = re.compile(
    r"\bscore[\s*_]*[:：][\s*_]*(-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)


def load_template(spec: str) -> str:
    if spec == "builtin":
        return resources.files("selfreward.templates").joinpath("judge.txt").read_text(encoding="utf-8")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"judge template not found: {path} (judge.template)")
    text = path.read_text(encoding="utf-8")
    missing = {"instruction", "response"} - set(_PLACEHOLDER.findall(text))
    if missing:
        raise UserError(f"judge template {path} lacks the placeholder(s) "
                        + ", ".join("{" + m + "}" for m in sorted(missing)))
    return text


def render(template: str, instruction: str, response: str) -> str:
    """One pass, so braces or placeholder names inside the texts are never substituted again."""
    values = {"instruction": instruction.strip(), "response": response.strip()}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def parse_score(text: str) -> float | None:
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


def aggregate(scores: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of the valid scores; (None, None) when none is valid."""
    valid = [s for s in scores if s is not None]
    if not valid:
        return None, None
    return statistics.fmean(valid), statistics.pstdev(valid)
