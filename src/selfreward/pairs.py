"""Preference pairs from judged candidates (pure).

Candidates are grouped by their prompt id, never by position or sort order: a peer sorted candidate ids as
strings and grouped them in fours, which pairs answers of different prompts once there are 10 or more prompts.

Per prompt, over the candidates with a score (None = unscored, left out):
- plain (length_control None): the highest score is chosen, the lowest rejected; ties among the best (or worst)
  go to the earliest candidate.
- length control rho (Meta-Rewarding): with S_max and S_min the prompt's extreme scores, the chosen answer is the
  shortest (in characters) in the top tier [(1 - rho) S_max + rho S_min, S_max], the rejected one the longest in
  the bottom tier [S_min, rho S_max + (1 - rho) S_min]; ties in length go to the earliest. rho = 0 is max vs min
  with ties broken by length.
- length penalty alpha (DICE): every score is first lowered by alpha * characters.
A prompt is dropped when it has fewer than 2 scores, or when the chosen answer does not score strictly above the
rejected one ("tie"). With `agree` (the scores of a second reward source), a pair is kept only where the second
source also scores the chosen answer strictly above the rejected one ("sources disagree" otherwise).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

# Penalties tried by auto_length_penalty: 0, then 1e-7 doubling up to ~1e2 score points per character.
PENALTY_GRID = [0.0] + [1e-7 * 2 ** k for k in range(31)]


def build_pairs(candidates: list[dict[str, Any]], judgments: list[dict[str, Any]],
                length_control: float | None = None, length_penalty: float = 0.0,
                agree: dict[Any, float | None] | None = None) -> tuple[list[dict], Counter]:
    """(pairs, dropped counts by reason); see the module docstring."""
    score = {j["candidate_id"]: j["score"] for j in judgments}
    by_prompt: dict[Any, list[dict]] = defaultdict(list)
    for cand in candidates:
        by_prompt[cand["prompt_id"]].append(cand)
    pairs, dropped = [], Counter()
    for prompt_id, cands in by_prompt.items():
        scored = [(score[c["id"]] - length_penalty * len(c["response"]), i, c)
                  for i, c in enumerate(cands) if score.get(c["id"]) is not None]
        if len(scored) < 2:
            dropped["fewer than 2 valid scores"] += 1
            continue
        best, worst = _extremes(scored, length_control)
        if best[0] <= worst[0]:
            dropped["tie"] += 1
            continue
        chosen, rejected = best[2], worst[2]
        if agree is not None and not _ordered(agree.get(chosen["id"]), agree.get(rejected["id"])):
            dropped["sources disagree"] += 1
            continue
        pairs.append({
            "prompt_id": prompt_id, "prompt": chosen["prompt"],
            "chosen_id": chosen["id"], "chosen": chosen["response"], "chosen_score": score[chosen["id"]],
            "rejected_id": rejected["id"], "rejected": rejected["response"], "rejected_score": score[rejected["id"]],
        })
    return pairs, dropped


def _extremes(scored: list[tuple[float, int, dict]], rho: float | None) -> tuple[tuple, tuple]:
    if rho is None:
        return max(scored, key=lambda s: (s[0], -s[1])), min(scored, key=lambda s: (s[0], s[1]))
    high, low = max(s[0] for s in scored), min(s[0] for s in scored)
    top = [s for s in scored if s[0] >= (1 - rho) * high + rho * low]
    bottom = [s for s in scored if s[0] <= rho * high + (1 - rho) * low]
    return min(top, key=lambda s: (len(s[2]["response"]), s[1])), \
        max(bottom, key=lambda s: (len(s[2]["response"]), -s[1]))


def _ordered(chosen: float | None, rejected: float | None) -> bool:
    return chosen is not None and rejected is not None and chosen > rejected


def length_gap(pairs: list[dict]) -> float | None:
    """Mean chosen length minus mean rejected length, in characters; None without pairs."""
    if not pairs:
        return None
    return statistics.fmean(len(p["chosen"]) for p in pairs) - statistics.fmean(len(p["rejected"]) for p in pairs)


def auto_length_penalty(candidates: list[dict], judgments: list[dict], length_control: float | None = None,
                        agree: dict | None = None) -> float:
    """DICE's alpha: of PENALTY_GRID, the one whose pairs have the smallest |length_gap| (the smallest alpha on
    ties, so no penalty when none is needed). A penalty that leaves no pair is never picked over one that does."""
    def cost(alpha: float) -> tuple[bool, float]:
        pairs, _ = build_pairs(candidates, judgments, length_control, alpha, agree)
        gap = length_gap(pairs)
        return gap is None, abs(gap) if gap is not None else 0.0

    return min(PENALTY_GRID, key=lambda a: (*cost(a), a))


def rho_for(length_control: float | list[float] | None, t: int) -> float | None:
    """rho of iteration t: the number, or the t-th of the list (its last one after that)."""
    if isinstance(length_control, list):
        return length_control[min(t, len(length_control)) - 1]
    return length_control
