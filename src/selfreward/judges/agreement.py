"""How well a model judges: score every response of a human-ranked set, then compare with the humans.

A judge's agreement is meaningless without the length heuristic beside it (on the shipped OASST2 scores
"the longer answer wins" is right 79% of the time), so every result carries the length and random baselines
computed on exactly the same responses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from selfreward.judges.metrics import baseline_metrics, format_table, judge_metrics
from selfreward.records import write_json, write_jsonl

Scorer = Callable[[list[dict]], list[dict]]  # candidates {"id", "prompt_id", "prompt", "response"} -> reward rows


def limit_groups(groups: list[dict], max_prompts: int | None, seed: int) -> list[dict]:
    """A fixed seeded subset of prompts (all of them when max_prompts is None or large enough)."""
    if max_prompts is None or max_prompts >= len(groups):
        return groups
    picked = sorted(random.Random(seed).sample(range(len(groups)), max_prompts))
    return [groups[i] for i in picked]


def candidates(groups: list[dict]) -> list[dict]:
    """The responses of judge-set groups as candidates, the rows a reward source scores."""
    return [{"id": r.get("id", f"{g['id']}-{i}"), "prompt_id": g["id"], "prompt": g["prompt"], "response": r["text"]}
            for g in groups for i, r in enumerate(g["responses"])]


def evaluate(score: Scorer, groups: list[dict], seed: int) -> tuple[list[dict], dict]:
    """(one reward row per response, {"judge": metrics, "length": ..., "random": ...}); an ensemble adds each
    source's metrics ("sources") and "ensemble": on the human-ordered pairs, the share both sources order alike
    (coverage) and how often that shared order is the humans' (accuracy): what the ensemble's pair filter keeps."""
    scored = iter(score(candidates(groups)))
    rows, judged = [], []
    for g in groups:
        responses = []
        for i, r in enumerate(g["responses"]):
            row = next(scored)
            rows.append({"group_id": g["id"], "response_id": r.get("id", f"{g['id']}-{i}"), "human": r["human"],
                         "chars": len(r["text"]), **row})
            responses.append({**r, "score": row["score"], "sources": row.get("sources")})
        judged.append({**g, "responses": responses})
    result = {"judge": judge_metrics(judged), **baseline_metrics(groups, seed=seed)}
    names = list(rows[0].get("sources") or {}) if rows else []
    if names:
        result["sources"] = {n: judge_metrics(_with_source(judged, n)) for n in names}
        result["ensemble"] = ensemble_pairs(judged, names)
    return rows, result


def _with_source(groups: list[dict], name: str) -> list[dict]:
    return [{**g, "responses": [{**r, "score": r["sources"][name]["score"]} for r in g["responses"]]} for g in groups]


def ensemble_pairs(groups: list[dict], names: list[str]) -> dict:
    agreed = right = pairs = 0
    for g in groups:
        rs = g["responses"]
        for i, a in enumerate(rs):
            for b in rs[i + 1:]:
                if a["human"] == b["human"]:
                    continue
                pairs += 1
                signs = set()
                for n in names:
                    x, y = a["sources"][n]["score"], b["sources"][n]["score"]
                    signs.add(None if x is None or y is None or x == y else x > y)
                if len(signs) == 1 and None not in signs:
                    agreed += 1
                    right += signs.pop() == (a["human"] > b["human"])
    return {"pairs": pairs, "agreed_pairs": agreed, "coverage": agreed / pairs if pairs else None,
            "accuracy_on_agreed": right / agreed if agreed else None}


def table(name: str, result: dict) -> str:
    rows = [(name, result["judge"])] + [(f"  {n} alone", m) for n, m in result.get("sources", {}).items()]
    text = format_table(rows + [("length heuristic", result["length"]), ("random", result["random"])])
    e = result.get("ensemble")
    if e:
        def pct(x):
            return ("-" if x is None else f"{100 * x:.1f}%")
        text += (f"\nensemble: both sources order {e['agreed_pairs']} of {e['pairs']} human-ordered pairs alike "
                 f"({pct(e['coverage'])}); the humans agree with that order on {pct(e['accuracy_on_agreed'])}")
    return text


def judge_set(score: Scorer, groups: list[dict], seed: int, out: Path, name: str, meta: dict, title: str) -> dict:
    """Score `groups`, write OUT/NAME.judgments.jsonl (the reward rows, raw evidence included) and OUT/NAME.json
    (metrics with their baselines, after `meta`), print the table; the result. Behind `selfreward eval-judge` and
    the eval-judge stage."""
    rows, result = evaluate(score, groups, seed)
    write_jsonl(out / f"{name}.judgments.jsonl", rows)
    write_json(out / f"{name}.json", {**meta, **result})
    print(table(title, result), flush=True)
    return result
