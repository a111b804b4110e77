"""Judge (instruction, response) items through any generation backend, in one of two scoring modes.

sample    k judgments sampled at the judge's temperature; the score is the mean of the parseable ones and
          their spread is kept (the paper's protocol).
expected  one greedy judgment; then, with the judge's text cut right after its own "Score:" (or "Score:"
          appended when it wrote none), one forward pass gives P(digit) for 0-5. The score is the expectation
          under those probabilities renormalised over the six digits: no sampling noise, ties become rare.
          When the digits get less than MIN_DIGIT_MASS of the probability, the judge was not about to write a
          score and the result is None, as an unparseable judgment is in sample mode.

Every row keeps the raw judge texts, so parsing can be re-run and every score audited.
"""

from __future__ import annotations

import math
import re

from selfreward.backends import Generator, Message, Sampling
from selfreward.config import JudgeConfig
from selfreward.errors import UserError
from selfreward.judge import MAX_SCORE, aggregate, parse_score, render

DIGITS = [str(d) for d in range(MAX_SCORE + 1)]
MIN_DIGIT_MASS = 0.1
# The label with any markdown that closes it: SmolLM2 writes "**Score:** 4" as '**', 'Score', ':**', ' ', '4', so
# the digit's probability must be read after the "**", where the judge itself put it.
_SCORE_LABEL = re.compile(r"score[\s*_]*[:：][*_]*", re.IGNORECASE)


def requests_for(template: str, items: list[tuple[str, str]]) -> list[list[Message]]:
    return [[{"role": "user", "content": render(template, q, r)}] for q, r in items]


def score_items(gen: Generator, template: str, items: list[tuple[str, str]], c: JudgeConfig, seed: int,
                desc: str = "judge") -> list[dict]:
    """One row per item: raw texts, parsed scores, the item's score (None when unscored) and its spread."""
    requests = requests_for(template, items)
    if c.mode == "sample":
        outs = gen.generate(requests, Sampling(c.k, c.temperature, c.top_p, c.max_new_tokens, seed), desc=desc)
        return [sampled_row(raws) for raws in outs]
    if not hasattr(gen, "option_probs"):
        raise UserError(f"judge.mode=expected needs token probabilities, which the {type(gen).__name__} backend "
                        "does not give; use judge.mode=sample or the transformers backend")
    outs = gen.generate(requests, Sampling(1, 0.0, 1.0, c.max_new_tokens, seed), desc=desc)
    raws = [o[0] for o in outs]
    probs = gen.option_probs(requests, [score_prefix(r) for r in raws], DIGITS, desc=f"{desc} (score)")
    return [expected_row(raw, p) for raw, p in zip(raws, probs)]


def sampled_row(raws: list[str]) -> dict:
    scores = [parse_score(r) for r in raws]
    mean, spread = aggregate(scores)
    return {"mode": "sample", "raw": raws, "scores": scores, "score": mean, "spread": spread}


def expected_row(raw: str, probs: list[float]) -> dict:
    mass = sum(probs)
    row = {"mode": "expected", "raw": [raw], "scores": [parse_score(raw)], "digit_mass": mass}
    if mass < MIN_DIGIT_MASS:
        return {**row, "score": None, "spread": None, "digit_probs": None}
    p = [x / mass for x in probs]
    mean = sum(d * x for d, x in enumerate(p))
    spread = math.sqrt(sum(x * (d - mean) ** 2 for d, x in enumerate(p)))
    return {**row, "score": mean, "spread": spread, "digit_probs": p}


def score_prefix(judgment: str) -> str:
    """The judge's text up to and including its own last "Score:" label, which the digit then follows."""
    matches = list(_SCORE_LABEL.finditer(judgment))
    if matches:
        return judgment[:matches[-1].end()]
    return judgment.rstrip() + "\nScore:"
