"""EFT targets from human quality scores (the human-score route).

A human quality label q in [0, 1] maps to N = round-half-up(5 q) on the additive 0-5 rubric. The justification
names the rubric points the response earns and the first one it misses, so the target reads like a rubric
judgment and always ends with `Score: N`.
"""

from __future__ import annotations

import math

_EARNED = [
    "is relevant to the question",
    "addresses a substantial part of it",
    "answers its basic elements usefully",
    "is clear, direct, comprehensive and well organized, as an assistant's answer should be",
    "is tailored to the question with no extraneous information and shows expert quality",
]
_MISSED = [
    "it is not relevant to the question or gives no related information",
    "it does not address a substantial part of the question",
    "it does not answer the basic elements of the question in a useful way",
    "it is not clear, direct and comprehensive enough to earn the fourth point",
    "it is not tailored and expert enough to earn the fifth point",
]


def human_to_score(quality: float) -> int:
    if not 0 <= quality <= 1:
        raise ValueError(f"quality must be in [0, 1], got {quality}")
    return math.floor(5 * quality + 0.5)


def target_for(score: int) -> str:
    if score not in range(6):
        raise ValueError(f"score must be an integer 0-5, got {score!r}")
    if score == 0:
        return f"The response earns no points: {_MISSED[0]}.\nScore: 0"
    earned = _EARNED[:score]
    listed = earned[0] if score == 1 else ", ".join(earned[:-1]) + " and " + earned[-1]
    points = "1 point" if score == 1 else f"{score} points"
    text = f"The response {listed}, so it earns {points}."
    if score < 5:
        text += f" It earns no more because {_MISSED[score]}."
    return f"{text}\nScore: {score}"
