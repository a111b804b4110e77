"""How well a model judges: score every response of a human-ranked set, then compare with the humans.

A judge's agreement is meaningless without the length heuristic beside it (on the shipped OASST2 scores
"the longer answer wins" is right 79% of the time), so every result carries the length and random baselines
computed on exactly the same responses.
"""

from __future__ import annotations

import random

from selfreward.backends import Generator
from selfreward.config import JudgeConfig
from selfreward.judge_metrics import baseline_metrics, format_table, judge_metrics
from selfreward.scoring import score_items


def limit_groups(groups: list[dict], max_prompts: int | None, seed: int) -> list[dict]:
    """A fixed seeded subset of prompts (all of them when max_prompts is None or large enough)."""
    if max_prompts is None or max_prompts >= len(groups):
        return groups
    picked = sorted(random.Random(seed).sample(range(len(groups)), max_prompts))
    return [groups[i] for i in picked]


def evaluate(gen: Generator, template: str, groups: list[dict], c: JudgeConfig, seed: int,
             desc: str = "eval-judge") -> tuple[list[dict], dict]:
    """(one judgment row per response, {"judge": metrics, "length": ..., "random": ...})."""
    items = [(g["prompt"], r["text"]) for g in groups for r in g["responses"]]
    scored = iter(score_items(gen, template, items, c, seed, desc=desc))
    rows, judged = [], []
    for g in groups:
        responses = []
        for i, r in enumerate(g["responses"]):
            row = next(scored)
            rows.append({"group_id": g["id"], "response_id": r.get("id", f"{g['id']}-{i}"), "human": r["human"],
                         "chars": len(r["text"]), **row})
            responses.append({**r, "score": row["score"]})
        judged.append({**g, "responses": responses})
    return rows, {"judge": judge_metrics(judged), **baseline_metrics(groups, seed=seed)}


def table(name: str, result: dict) -> str:
    return format_table([(name, result["judge"]), ("length heuristic", result["length"]),
                         ("random", result["random"])])
