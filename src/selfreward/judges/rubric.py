"""The additive 0-5 rubric judge: requests, and score rows from raw judgments.

sample    k judgments sampled at the judge's temperature; the score is the mean of the parseable ones and
          their spread is kept (the paper's protocol).
expected  one greedy judgment; then, with the judge's text cut right after its own final score label (or "Score:"
          appended when it wrote none), one forward pass gives P(digit) for 0-5. The score is the expectation
          under those probabilities renormalised over the six digits: no sampling noise, ties become rare.
          When the digits get less than MIN_DIGIT_MASS of the probability, the judge was not about to write a
          score and the result is None, as an unparseable judgment is in sample mode.

Every row keeps the raw judge texts, so parsing can be re-run and every score audited. How a judgment's score is
read is written down in `selfreward.judges.rubric_parse`.
"""

from __future__ import annotations

import math
import statistics

from selfreward.backends import Message
from selfreward.judges.rubric_parse import MAX_SCORE, parse_score, score_label_end
from selfreward.judges.templates import render

DIGITS = [str(d) for d in range(MAX_SCORE + 1)]
MIN_DIGIT_MASS = 0.1


def requests_for(template: str, items: list[tuple[str, str]]) -> list[list[Message]]:
    return [[{"role": "user", "content": render(template, {"instruction": q, "response": r})}] for q, r in items]


def aggregate(scores: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of the valid scores; (None, None) when none is valid."""
    valid = [s for s in scores if s is not None and math.isfinite(s)]
    if not valid:
        return None, None
    return statistics.fmean(valid), statistics.pstdev(valid)


def sampled_row(raws: list[str]) -> dict:
    scores = [parse_score(r) for r in raws]
    mean, spread = aggregate(scores)
    return {"mode": "sample", "raw": raws, "scores": scores, "score": mean, "spread": spread}


def expected_row(raw: str, probs: list[float]) -> dict:
    """A non-finite probability (a broken forward pass) leaves the item unscored rather than scored NaN."""
    mass = sum(probs)
    row = {"mode": "expected", "raw": [raw], "scores": [parse_score(raw)],
           "digit_mass": mass if math.isfinite(mass) else None}
    if not math.isfinite(mass) or mass < MIN_DIGIT_MASS:
        return {**row, "score": None, "spread": None, "digit_probs": None}
    p = [x / mass for x in probs]
    mean = sum(d * x for d, x in enumerate(p))
    spread = math.sqrt(sum(x * (d - mean) ** 2 for d, x in enumerate(p)))
    return {**row, "score": mean, "spread": spread, "digit_probs": p}


def score_prefix(judgment: str) -> str:
    """The judge's text up to and including the label of its final score statement, which the digit then follows."""
    end = score_label_end(judgment)
    if end is not None:
        return judgment[:end]
    return judgment.rstrip() + "\nScore:"
