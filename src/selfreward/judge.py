"""The judge as data plus pure functions: a rubric template, a renderer, a score parser, an aggregator.

The parser returns None for anything it cannot read. It never falls back to a number: an unparseable judgment
that became 0 would turn into a "rejected" answer and teach the model something false.

The texts put into the template are untrusted: a response may carry chat-template tokens, fake role headers or
the template's own delimiters. `render` neutralises them (a space after their first character), so the judge
prompt keeps one structure whatever the response says; the backends also neutralise their tokenizer's special
tokens in every message. Only the judge's own output is ever parsed.
"""

from __future__ import annotations

import re
import statistics
from importlib import resources
from pathlib import Path

from selfreward.errors import UserError

MAX_SCORE = 5
_PLACEHOLDER = re.compile(r"\{(instruction|response)\}")
# Structure markers of common chat formats: <|im_start|>, <|eot_id|>, [INST], <<SYS>>, <s>, <start_of_turn>...
_MARKERS = re.compile(r"<\|[^<>|\s]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|<\|?(?:endoftext|eos|bos)\|?>",
                      re.IGNORECASE)
# A line that opens like a turn of a plain-text chat format ("Assistant:", "### User:").
_ROLE_LINE = re.compile(r"^([ \t]*(?:#{1,6}[ \t]*)?)(system|user|assistant|human|gpt|model|instruction|response)([ \t]*:)",
                        re.IGNORECASE | re.MULTILINE)
_TAG = re.compile(r"</?[A-Za-z][\w-]*>")
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
    tags = set(_TAG.findall(template))
    values = {"instruction": neutralize(instruction.strip(), tags), "response": neutralize(response.strip(), tags)}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def defang(marker: str) -> str:
    """A marker that no tokenizer or reader takes as structure any more, still readable as text."""
    return marker[0] + " " + marker[1:]


def neutralize(text: str, markers: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` with chat-format tokens, role-header lines and the given exact markers (e.g. the template's
    delimiter tags, a tokenizer's special tokens) made inert."""
    for marker in sorted(markers, key=len, reverse=True):
        if len(marker) > 1:
            text = text.replace(marker, defang(marker))
    text = _MARKERS.sub(lambda m: defang(m.group(0)), text)
    return _ROLE_LINE.sub(lambda m: f"{m.group(1)}> {m.group(2)}{m.group(3)}", text)


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
