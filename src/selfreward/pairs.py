"""Preference pairs from judged candidates (pure).

Candidates are grouped by their prompt id, never by position or sort order: a peer sorted candidate ids as
strings and grouped them in fours, which pairs answers of different prompts once there are 10 or more prompts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


def build_pairs(candidates: list[dict[str, Any]], judgments: list[dict[str, Any]]) -> tuple[list[dict], Counter]:
    """Highest vs lowest mean score per prompt. Drops prompts with < 2 valid scores and ties between extremes."""
    score = {j["candidate_id"]: j["score"] for j in judgments}
    by_prompt: dict[Any, list[dict]] = defaultdict(list)
    for cand in candidates:
        by_prompt[cand["prompt_id"]].append(cand)
    pairs, dropped = [], Counter()
    for prompt_id, cands in by_prompt.items():
        scored = [(score[c["id"]], i, c) for i, c in enumerate(cands) if score.get(c["id"]) is not None]
        if len(scored) < 2:
            dropped["fewer than 2 valid scores"] += 1
            continue
        # Ties among the best (or worst) go to the earliest candidate, so the result is deterministic.
        best = max(scored, key=lambda s: (s[0], -s[1]))
        worst = min(scored, key=lambda s: (s[0], s[1]))
        if best[0] == worst[0]:
            dropped["tie"] += 1
            continue
        chosen, rejected = best[2], worst[2]
        pairs.append({
            "prompt_id": prompt_id, "prompt": chosen["prompt"],
            "chosen_id": chosen["id"], "chosen": chosen["response"], "chosen_score": best[0],
            "rejected_id": rejected["id"], "rejected": rejected["response"], "rejected_score": worst[0],
        })
    return pairs, dropped
