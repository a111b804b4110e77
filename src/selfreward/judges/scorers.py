"""Rubric scorers, chosen by judge.mode. Each states the backend capabilities it needs, so a stage opens a backend
that has them (and a backend without them is refused before any model loads).

    score_items(gen, template, items, judge_config, seed) -> one row per (instruction, response) item
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from selfreward.backends import GENERATE, OPTION_PROBS, Generator, Sampling
from selfreward.config import JudgeConfig
from selfreward.errors import UserError
from selfreward.judges.rubric import DIGITS, expected_row, requests_for, sampled_row, score_prefix


@dataclass(frozen=True)
class Scorer:
    needs: frozenset[str]
    score: Callable[[Generator, list, JudgeConfig, int, str], list[dict]]


# A judgment ends with its score line: "Score: N" (N a digit the rubric allows, as the template asks, or with a
# period, "/5" or "points" after it) and the newline that closes the line. The text written after it was never
# read (the parser takes the final score statement, and the template asks for the score on the last line), and a
# judgment that goes on past its score ran to max_new_tokens. Each of these lines is a statement `parse_score`
# reads as N; a score written any other way ("**Score:** 4", "Score: 1+1+1 = 3") stops nothing and the judgment
# runs on as before.
SCORE_LINE_STOP = tuple(f"Score: {d}{unit}\n" for d in DIGITS for unit in ("", ".", "/5", " points", " point"))


def _sample(gen: Generator, requests: list, c: JudgeConfig, seed: int, desc: str) -> list[dict]:
    outs = gen.generate(requests, Sampling(c.k, c.temperature, c.top_p, c.max_new_tokens, seed, SCORE_LINE_STOP),
                        desc=desc)
    return [sampled_row(raws) for raws in outs]


def _expected(gen: Generator, requests: list, c: JudgeConfig, seed: int, desc: str) -> list[dict]:
    outs = gen.generate(requests, Sampling(1, 0.0, 1.0, c.max_new_tokens, seed, SCORE_LINE_STOP), desc=desc)
    raws = [o[0] for o in outs]
    probs = gen.option_probs(requests, [score_prefix(r) for r in raws], DIGITS, desc=f"{desc} (score)")
    return [expected_row(raw, p) for raw, p in zip(raws, probs)]


SCORERS = {
    "sample": Scorer(frozenset({GENERATE}), _sample),
    "expected": Scorer(frozenset({GENERATE, OPTION_PROBS}), _expected),
}


def needs(c: JudgeConfig) -> frozenset[str]:
    return SCORERS[c.mode].needs


def score_items(gen: Generator, template: str, items: list[tuple[str, str]], c: JudgeConfig, seed: int,
                desc: str = "judge") -> list[dict]:
    """One row per item: raw texts, parsed scores, the item's score (None when unscored) and its spread."""
    scorer = SCORERS[c.mode]
    if OPTION_PROBS in scorer.needs - gen.capabilities:
        raise UserError(f"judge.mode={c.mode} needs next-token option probabilities, which the {type(gen).__name__} "
                        "does not give; use judge.mode=sample, or a backend that gives them (transformers)")
    return scorer.score(gen, requests_for(template, items), c, seed, desc)
