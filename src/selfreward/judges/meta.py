"""Meta-Rewarding (Wu et al., 2024, arXiv 2407.19594): the model judges its own judgments. Pure over its generator.

Per iteration, on the rubric judge's output (judgments.jsonl in judge.mode=sample: k judgments per answer):

which answers  `disagreeing_answers`: an answer whose valid judgments (those with a parsed score) do not all give
               the same score. Per prompt, the ones whose scores spread most (population standard deviation; ties go
               to the earliest answer), at most `per_prompt` of them (the paper: one).
comparisons    `meta_judge`: every two valid judgments of such an answer, shown to the meta-judge in both orders
               (`selfreward.judges.pairwise.both_orders` with the meta task): a forced choice between the letters A
               and B from next-token probabilities where the backend gives them, else a generated [[A]]/[[B]] verdict
               (an API judge), parsed. Position bias is corrected by averaging the two orders, as both_orders does:
               P(i better than j) = (P(A | i shown first) + 1 - P(A | j shown first)) / 2. A meta-judge that adds the
               same weight to slot A in every comparison leaves this unchanged, and one that always answers A gives
               1/2: no preference. (The paper reweights each slot's verdicts by how often that slot wins; averaging
               the two orders of every comparison is the symmetric form of the same correction.)
ratings        `bradley_terry`: Elo ratings by maximum likelihood under the Bradley-Terry model
               P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)), fitted to those soft outcomes. Each judgment also
               gets PRIOR_GAMES virtual drawn games against a fixed player rated ELO_BASE: the ratings stay finite when
               one judgment wins every comparison, and a judgment never compared is rated ELO_BASE. Solved by the
               minorization-maximization iteration of Hunter (2004), which converges to the unique maximum.
judge pairs    `select_judge_pairs`: the highest-rated judgment (chosen) against the lowest-rated one (rejected), then
               the 2nd highest against the 2nd lowest and so on: the first `limit` of those per answer. A pair is
               dropped when its two ratings tie, when its two judgments give the same score (as the paper does), or
               when the chosen judgment is longer than `max_chars` characters (the paper's length limit).
               `judge_pair_rows` writes them for DPO: the prompt is the rubric judge prompt of that answer,
               chosen and rejected the two judgment texts.
share          `judge_pair_count`, `sample_rows`: DPO takes the most judge pairs that keep judge / (actor + judge) at
               or below the iteration's share, a seeded sample of them (too many make the judge collapse).
collapse       `rubric_scores`, `score_distribution`, `collapse_message`: each rubric score's share of the valid
               scores, the distribution's entropy, and a plain warning when one score takes more than a set share.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import combinations
from typing import Any

from selfreward.backends import Generator, Sampling
from selfreward.judges.pairwise import Task, both_orders
from selfreward.judges.rubric import requests_for

ELO_BASE = 1000.0
ELO_SCALE = 400.0  # Elo points per factor 10 in the odds
PRIOR_GAMES = 1.0  # virtual drawn games of each judgment against a player rated ELO_BASE
RATING_TIE = 1e-6  # Elo points: ratings closer than this are equal
META_PREFIX = "Better judgment:"  # the assistant's turn starts with it; the next token is the letter
RATING_METHOD = (f"Bradley-Terry maximum likelihood on the Elo scale, {PRIOR_GAMES:g} virtual draw(s) each against a "
                 f"player rated {ELO_BASE:g}; position bias corrected by averaging both orders")


def task(spec: str = "builtin") -> Task:
    """The meta-judge's comparison: templates meta_choice (one letter) and meta ([[A]]/[[B]]), or one file."""
    return Task("meta_choice", "meta", "judgment_a", "judgment_b", META_PREFIX, spec, "meta.template")


# --- which answers -----------------------------------------------------------------------------------------------
def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def valid_judgments(row: dict) -> list[dict]:
    """[{"index", "text", "score"}] of a rubric row's judgments that have a parsed score; index = position in the
    row's "raw" list."""
    raws, scores = row.get("raw") or [], row.get("scores") or []
    return [{"index": j, "text": raw, "score": s} for j, (raw, s) in enumerate(zip(raws, scores))
            if isinstance(raw, str) and _number(s)]


def disagreeing_answers(candidates: list[dict], judgments: list[dict], per_prompt: int | None) -> list[dict]:
    """[{"candidate", "judgments" (valid ones), "spread"}] of the answers to meta-judge, in candidate order (see the
    module docstring); `per_prompt` None = every disagreeing answer."""
    by_id = {j.get("candidate_id"): j for j in judgments}
    by_prompt: dict[Any, list[tuple]] = defaultdict(list)
    for i, cand in enumerate(candidates):
        row = by_id.get(cand["id"])
        if row is None or row.get("cut_off") or row.get("source", "rubric") != "rubric":
            continue
        valid = valid_judgments(row)
        scores = [v["score"] for v in valid]
        if len(set(scores)) < 2:
            continue
        by_prompt[cand["prompt_id"]].append((statistics.pstdev(scores), i, cand, valid))
    picked = []
    for items in by_prompt.values():
        items.sort(key=lambda x: (-x[0], x[1]))
        picked += items if per_prompt is None else items[:per_prompt]
    picked.sort(key=lambda x: x[1])
    return [{"candidate": cand, "judgments": valid, "spread": spread} for spread, _, cand, valid in picked]


# --- ratings -------------------------------------------------------------------------------------------------------
def bradley_terry(n: int, outcomes: Iterable[tuple[int, int, float]], prior: float = PRIOR_GAMES,
                  tol: float = 1e-10, max_iter: int = 100_000) -> list[float]:
    """Elo ratings of players 0..n-1 from outcomes (i, j, p): p = how much i beat j in one game (1 a win, 0 a loss,
    1/2 a draw, or a probability). Maximum likelihood under Bradley-Terry with `prior` virtual draws per player
    against a fixed player rated ELO_BASE (see the module docstring)."""
    if prior <= 0:
        raise ValueError("prior must be positive")
    wins = [prior / 2] * n
    games: list[dict[int, float]] = [defaultdict(float) for _ in range(n)]
    for i, j, p in outcomes:
        if i == j or not (0 <= i < n and 0 <= j < n) or not (_number(p) and 0 <= p <= 1):
            raise ValueError(f"bad outcome {(i, j, p)!r} for {n} players")
        wins[i] += p
        wins[j] += 1 - p
        games[i][j] += 1
        games[j][i] += 1
    strength = [1.0] * n  # the fixed player's strength is 1
    for _ in range(max_iter):
        change = 0.0
        for i in range(n):  # cyclic MM: each update raises the likelihood
            denom = prior / (strength[i] + 1.0) + sum(g / (strength[i] + strength[j]) for j, g in games[i].items())
            new = wins[i] / denom
            change = max(change, abs(math.log(new / strength[i])))
            strength[i] = new
        if change < tol:
            break
    return [ELO_BASE + ELO_SCALE * math.log10(s) for s in strength]


def win_probability(r_i: float, r_j: float) -> float:
    """P(i beats j) under the ratings."""
    return 1 / (1 + 10 ** ((r_j - r_i) / ELO_SCALE))


def meta_judge(gen: Generator, answers: list[dict], sampling: Sampling, spec: str = "builtin",
               desc: str = "meta-judge") -> list[dict]:
    """One row per answer of `disagreeing_answers`: "judgments" [{"index", "score", "chars", "rating"}] and
    "comparisons" [{"a", "b" (positions in "judgments"), "p_a" (P(a is better), both orders averaged; None unless
    both were read), "ab", "ba" (each order's evidence: option probabilities, or the raw verdict text)}]. Every
    comparison of every answer goes to the meta-judge in one call."""
    items, where = [], []
    for a, ans in enumerate(answers):
        context = {"instruction": ans["candidate"]["prompt"], "response": ans["candidate"]["response"]}
        js = ans["judgments"]
        for i, j in combinations(range(len(js)), 2):
            items.append((context, js[i]["text"], js[j]["text"]))
            where.append((a, i, j))
    results = both_orders(gen, items, sampling, desc=desc, task=task(spec)) if items else []
    comparisons: list[list[dict]] = [[] for _ in answers]
    for (a, i, j), r in zip(where, results):
        comparisons[a].append({"a": i, "b": j, "p_a": r["p_a"], "ab": r["ab"], "ba": r["ba"]})
    rows = []
    for ans, comps in zip(answers, comparisons):
        js = ans["judgments"]
        ratings = bradley_terry(len(js), [(c["a"], c["b"], c["p_a"]) for c in comps if c["p_a"] is not None])
        cand = ans["candidate"]
        rows.append({"candidate_id": cand["id"], "prompt_id": cand["prompt_id"], "spread": ans["spread"],
                     "judgments": [{"index": x["index"], "score": x["score"], "chars": len(x["text"]), "rating": r}
                                   for x, r in zip(js, ratings)],
                     "comparisons": comps, "unread": sum(c["p_a"] is None for c in comps),
                     "rating_method": RATING_METHOD})
    return rows


# --- judge pairs -------------------------------------------------------------------------------------------------
def select_judge_pairs(judgments: list[dict], limit: int, max_chars: int | None = None) -> tuple[list[tuple[int, int]],
                                                                                               Counter]:
    """(pairs (chosen position, rejected position), dropped counts by reason) of one answer's rated judgments
    [{"score", "rating", "chars"}]: outermost first in rating order (ties in rating: the earlier judgment ranks
    higher), the first `limit` candidates, see the module docstring."""
    order = sorted(range(len(judgments)), key=lambda k: (-judgments[k]["rating"], k))
    pairs, dropped = [], Counter()
    for rank in range(min(limit, len(order) // 2)):
        hi, lo = judgments[order[rank]], judgments[order[-1 - rank]]
        if hi["rating"] - lo["rating"] < RATING_TIE:
            dropped["ratings tie"] += 1
        elif hi["score"] == lo["score"]:
            dropped["same score"] += 1
        elif max_chars is not None and hi["chars"] > max_chars:
            dropped["chosen judgment too long"] += 1
        else:
            pairs.append((order[rank], order[-1 - rank]))
    return pairs, dropped


def judge_pair_rows(answers: list[dict], rated: list[dict], rubric_template: str, limit: int,
                    max_chars: int | None = None) -> tuple[list[dict], Counter]:
    """The judge pairs of every meta-judged answer (`answers` and `meta_judge`'s rows, in the same order), as DPO
    reads them: "prompt" (the rubric judge prompt of the answer), "chosen" and "rejected" (judgment texts), with
    their indices, scores and ratings; and the dropped counts."""
    rows, dropped = [], Counter()
    for ans, row in zip(answers, rated, strict=True):
        pairs, drop = select_judge_pairs(row["judgments"], limit, max_chars)
        dropped.update(drop)
        cand = ans["candidate"]
        prompt = requests_for(rubric_template, [(cand["prompt"], cand["response"])])[0][0]["content"]
        for hi, lo in pairs:
            c, r = row["judgments"][hi], row["judgments"][lo]
            rows.append({"prompt_id": cand["prompt_id"], "candidate_id": cand["id"], "prompt": prompt,
                         "chosen": ans["judgments"][hi]["text"], "rejected": ans["judgments"][lo]["text"],
                         "chosen_index": c["index"], "rejected_index": r["index"],
                         "chosen_score": c["score"], "rejected_score": r["score"],
                         "chosen_rating": c["rating"], "rejected_rating": r["rating"]})
    return rows, dropped


def judge_pair_count(actor: int, available: int, share: float) -> int:
    """How many judge pairs go beside `actor` actor pairs: the most (up to `available`) with
    judge / (actor + judge) <= share; share in [0, 1)."""
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    return min(available, math.floor(share * actor / (1 - share) + 1e-9))


def sample_rows(rows: list[dict], n: int, seed: int) -> list[dict]:
    """A seeded sample of n rows, in their original order."""
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


# --- collapse guard ----------------------------------------------------------------------------------------------
def rubric_scores(rows: list[dict]) -> list[float]:
    """The valid rubric scores of judgments.jsonl rows: every parsed judgment in sample mode, every answer's expected
    score in expected mode (the rubric part of an ensemble row); none for other reward sources."""
    out: list[float] = []
    for row in rows:
        if row.get("cut_off"):
            continue
        r = (row.get("sources") or {}).get("rubric", row)
        if r.get("source", "rubric") != "rubric":
            continue
        values = [r.get("score")] if r.get("mode") == "expected" else (r.get("scores") or [])
        out += [s for s in values if _number(s)]
    return out


def score_distribution(scores: list[float]) -> dict[str, Any]:
    """Of valid 0-5 scores, each rounded half up: "valid_scores", "score_shares" {"0".."5": share of the valid
    scores, those that occur}, "score_entropy" (bits; log2(6) = 2.585 when all six are equally common, 0 when one
    score is all), "top_score" (the most common; ties to the higher) and "top_score_share"."""
    counts = Counter(math.floor(s + 0.5) for s in scores)
    n = len(scores)
    if not n:
        return {"valid_scores": 0, "score_shares": {}, "score_entropy": None, "top_score": None,
                "top_score_share": None}
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values())
    top = max(counts, key=lambda k: (counts[k], k))
    return {"valid_scores": n, "score_shares": {str(k): round(v / n, 4) for k, v in sorted(counts.items())},
            "score_entropy": round(abs(entropy), 4), "top_score": top, "top_score_share": round(counts[top] / n, 4)}


def collapse_message(dist: dict[str, Any], max_share: float) -> str | None:
    """One plain line when the most common score takes more than `max_share` of the valid scores, else None."""
    share = dist.get("top_score_share")
    if share is None or share <= max_share:
        return None
    return (f"judge collapse: score {dist['top_score']} is {100 * share:.1f}% of the {dist['valid_scores']} valid "
            f"judge scores (more than meta.collapse_share {max_share:g}); a judge that gives nearly every answer the "
            "same score no longer tells them apart")
