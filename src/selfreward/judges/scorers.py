"""Rubric scorers, chosen by judge.mode. Each states the backend capabilities it needs, so a stage opens a backend
that has them (and a backend without them is refused before any model loads).

    score_items(gen, template, items, judge_config, seed) -> one row per (instruction, response) item
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from selfreward.backends import GENERATE, OPTION_PROBS, Generator, Sampling
from selfreward.config import JudgeConfig
from selfreward.errors import UserError
from selfreward.judges.rubric import DIGITS, expected_row, requests_for, sampled_row, score_prefix


@dataclass(frozen=True)
class Scorer:
    needs: frozenset[str]
    score: Callable[[Generator, list, JudgeConfig, int, str], list[dict]]


def _sample(gen: Generator, requests: list, c: JudgeConfig, seed: int, desc: str) -> list[dict]:
    outs = gen.generate(requests, Sampling(c.k, c.temperature, c.top_p, c.max_new_tokens, seed), desc=desc)
    return [sampled_row(raws) for raws in outs]


def _expected(gen: Generator, requests: list, c: JudgeConfig, seed: int, desc: str) -> list[dict]:
    outs = gen.generate(requests, Sampling(1, 0.0, 1.0, c.max_new_tokens, seed), desc=desc)
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
