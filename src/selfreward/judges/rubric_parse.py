"""Reading the score out of a judge's text: the additive 0-5 rubric's "Score: N".

The rule is the one a careful reader applies: **the score is what the judgment's final score statement says.**

Score statement
    A label "score", optionally followed by a short parenthetical ("Score (0-5):"), then a colon (":" or the
    full-width "："), with any markdown around it ("**Score:** 4", "**Score: 4**", "__Score__: 4", "### Score: 4",
    "- Score: 4"). The label counts only when the word right before "score" on its line, if any, is one of
    final, total, overall, or a determiner (the, a, an, my, our, its, this, your): "Final Score:", "Total score:",
    "My final score:" are statements; "Confidence score:", "Sub-score:", "partial score:", "Response 2 score:",
    "Dual Score:", "underscore:" are not. A capitalised "Score:" right after a lower-case word that is not joined to
    it by a hyphen is a statement too ("... 2, actually Score: 5"): a compound name would not capitalise it.
    Other labels ("Rating:", "Total points:") and prose ("The score is 4.", "a score of 10
    points", "I give it 4") are never statements: the rubric asks for a "Score:" line, and the default model's
    prose mentions of a score are rarely its verdict.

Final statement
    The last score statement in the text. Earlier statements are ignored, whatever they say (a quoted
    "score: 5", a changed mind "Score: 2 ... Score: 3", a "Final score: 2" followed by "Score: 3"), and so is
    text after it that is not a score statement ("Score: 3\\nConfidence score: 0.9" gives 3).

Its value
    Read right after the label; it may sit on the next line only if nothing but markup or a period follows it
    there ("Score:\\n4"; not "Score:\\n1. The response..."). Accepted forms:
      - a plain decimal number, optionally in markdown, brackets or with a unit: "4", "4.5", "**4**", "[4]",
        "<4>", "4 points", "4.", "4 - relevant and clear";
      - over 5: "4/5", "4 / 5", "4 out of 5", "4.5/5.0"; any other denominator makes it None ("4/10",
        "4 out of 10");
      - an arithmetic total, whose result is the score: "1+1+1+1 = 4" -> 4, "2 + 1 = 3" -> 3, "5 - 1 = 4" -> 4;
        a sum without a result is added up ("1+1+1" -> 3); a result that contradicts its own terms
        ("1+1+1 = 4") and a difference without a result ("4-5", read as a range) are None.
    Anything else is None: a number glued to letters, digits or "%" ("1e1", "4th", "4%"), a second number
    joined by ",", ";", "/", "~", "-", "or", "to", "and", "=" ("4,5", "4, 5", "3 or 4", "3-4"), words ("N/A",
    "four", "<total points>"), nothing at all ("Score:" cut off at the end), or a value outside 0-5 ("-1", "6").

No fallback
    If the final statement is unreadable the result is None, never an earlier statement's value nor a default
    number: the judge's last word is unreadable, so we do not know what it meant, and an invented score (0 would
    be a "rejected" answer) teaches the model something false. No score statement at all is also None.

Full-width ASCII forms (digits, colon, slash...) and U+2212 MINUS SIGN are read as their ASCII equivalents;
that mapping is one character to one, so `score_label_end`'s index is an index into the text given.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["MAX_SCORE", "parse_score", "score_label_end"]

MAX_SCORE = 5

# One character to one, so indices found in the normalised text are indices in the original.
_NORMALISE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_NORMALISE[0x2212] = ord("-")

_LABEL = re.compile(r"(?<![^\W_])score(?:[ \t]*\([^()\n]{0,30}\))?[ \t*_]*:[*_]*", re.IGNORECASE)
# The word right before "score" on its line (a hyphen or markdown may join them: "Sub-score", "**Final Score").
_QUALIFIER = re.compile(r"((?:[^\W_]|['’])+)(?:-|[ \t*_`]*)\Z")
_ALLOWED_QUALIFIERS = frozenset({"final", "total", "overall", "the", "a", "an", "my", "our", "its", "this", "your"})

# A number, optionally with a unit; never glued to more digits, letters or "%".
_NUM = r"[-+]?[0-9]+(?:\.[0-9]+)?(?:[ \t]*(?:points?|pts?)(?![^\W_]))?(?![^\W_]|\.[0-9]|%)"
_VALUE = re.compile(
    rf"""(?P<lead>[\s*_`]*)
    (?:[\[(<][ \t*_`]*)?
    (?P<terms>{_NUM}(?:[ \t]*[-+][ \t]*{_NUM})*)
    (?:[ \t]*=[ \t]*(?P<result>{_NUM}))?
    (?:[ \t*_`]*(?:/|out[ \t]+of)[ \t*_`]*(?P<den>{_NUM}))?
    [ \t*_`]*(?:[\])>][ \t*_`]*)?""",
    re.IGNORECASE | re.VERBOSE,
)
_TERM = re.compile(r"([-+]?)[ \t]*([0-9]+(?:\.[0-9]+)?)")
# A second number right after the value makes the statement ambiguous: "4,5", "3 or 4", "4/5/5", "3-4".
_AMBIGUOUS_TAIL = re.compile(r"[ \t]*(?:[,;~/+=×\-–—]|(?:or|to|and)(?![^\W_]))[ \t]*[-+]?[0-9]", re.IGNORECASE)
_REST_OF_LINE_EMPTY = re.compile(r"[ \t*_.]*(?:\n|\Z)")


def _statements(text: str) -> list[re.Match[str]]:
    found = []
    for m in _LABEL.finditer(text):
        window = max(0, m.start() - 64)
        line_start = text.rfind("\n", window, m.start()) + 1
        before = _QUALIFIER.search(text[max(line_start, window):m.start()])
        if before is None or before.group(1).lower() in _ALLOWED_QUALIFIERS or _label_after_prose(m, before):
            found.append(m)
    return found


def _label_after_prose(label: re.Match[str], before: re.Match[str]) -> bool:
    """"... actually Score: 5": a capitalised label after a lower-case word, not joined to it by a hyphen, starts
    a statement of its own; "Confidence score:", "Dual Score:" and "Sub-Score:" are compound names."""
    word = before.group(1)
    return label.group(0)[0] == "S" and word[0].islower() and not before.group(0).endswith("-")


def _final_statement(text: str) -> tuple[str, re.Match[str]] | None:
    if not isinstance(text, str):
        return None
    norm = text.translate(_NORMALISE)
    statements = _statements(norm)
    return (norm, statements[-1]) if statements else None


def score_label_end(text: str) -> int | None:
    """Index just after the final score statement's label ("Score:" and markdown closing it, as in "**Score:**"),
    where its value begins; None when the text has no score statement. Same statement as `parse_score` reads."""
    found = _final_statement(text)
    return found[1].end() if found else None


def _number(token: str) -> Decimal:
    sign, digits = _TERM.match(token).groups()
    return -Decimal(digits) if sign == "-" else Decimal(digits)


def parse_score(text: str) -> float | None:
    """The value of the judgment's final score statement (module docstring), or None when there is none or it
    is unreadable, ambiguous, or outside 0-MAX_SCORE."""
    found = _final_statement(text)
    if found is None:
        return None
    norm, label = found
    m = _VALUE.match(norm, label.end())
    if m is None or _AMBIGUOUS_TAIL.match(norm, m.end()):
        return None
    if "\n" in m.group("lead") and not _REST_OF_LINE_EMPTY.match(norm, m.end()):
        return None  # "Score:\n1. The response ..." is a list, not a value
    terms = [(sign, Decimal(digits)) for sign, digits in _TERM.findall(m.group("terms"))]
    total = sum((-v if sign == "-" else v) for sign, v in terms)
    if m.group("result") is not None:
        value = _number(m.group("result"))
        if total != value:
            return None  # the result contradicts its own terms: "1+1+1 = 4"
    else:
        if any(sign == "-" for sign, _ in terms[1:]):
            return None  # "4-5" is a range, not a subtraction
        value = total
    if m.group("den") is not None and _number(m.group("den")) != MAX_SCORE:
        return None
    if not 0 <= value <= MAX_SCORE:
        return None
    return float(value)
