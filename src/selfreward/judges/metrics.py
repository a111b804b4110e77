"""How far a judge's scores agree with human rankings, beside the baselines it has to beat.

Input: a list of groups, one per prompt, each with >= 2 responses:
    {"id": str, "prompt": str, "responses": [{"text": str, "human": float, "score": float | None}, ...]}
`human` is higher-is-better. `score` is the judge's number, or None when its judgment could not be parsed (a
missing "score" key counts as None). Length means len(text) in characters.

Definitions. A pair is an unordered pair of responses within one group.
- pairs: the human-ordered pairs (the two `human` values differ). Human-tied pairs enter no pairwise metric.
- agree / disagree / tie, on each human-ordered pair: the judge agrees when it scores the human-preferred
  response strictly higher, disagrees when strictly lower, and ties when the two scores are equal or either is
  None (it expressed no preference).
- pairwise_accuracy = (agree + 0.5 * tie) / pairs. Half credit for a tie means a constant judge and a random
  judge both get 0.5: abstaining is never rewarded over guessing. None when pairs == 0.
- shorter_preferred_pairs / shorter_preferred_accuracy: the same count and accuracy on the human-ordered pairs
  whose human-preferred response is strictly shorter. A judge that only rewards length falls below 0.5 here, so
  this is the signal beyond length. None when there are no such pairs.
- length_correlation: Spearman rho (scipy.stats.spearmanr) between score and length over every scored response,
  pooled across groups. None with fewer than 3 scored responses, or when scores or lengths are all equal.
- partial_correlation: the correlation of score with the human value at fixed length: the partial Spearman
  correlation (r_sh - r_sl r_hl) / sqrt((1 - r_sl^2)(1 - r_hl^2)) over the same pooled responses, from the
  Spearman correlations of score (s), human value (h) and length (l). What a judge knows beyond length: a score
  that is a function of length (|r_sl| = 1, the length heuristic) gets 0. None with fewer than 4 scored responses,
  where a correlation is undefined, or where the human value is a function of length.

The group metrics below run over the ranked groups: those with >= 2 distinct `human` values (their number is
correlation_groups). A group whose responses all tie for humans has no order to recover. Each is None when
there are no ranked groups.
- exact_match: the share of ranked groups where, for every pair, sign(score_a - score_b) == sign(human_a -
  human_b), so human ties must be judge ties too. A group with a None score does not match.
- five_best (the Self-Rewarding paper's "5-best"): of the responses in ranked groups scored >= 4.5 (a 5 after
  rounding; five_best_n counts them), the share that are human-best (human == the group's max; every response
  tying for best counts as best). None when five_best_n == 0.
- top1: per ranked group, m / k where k responses share the group's highest judge score and m of those are
  human-best; a None score ranks below every number here (and only here). Mean over ranked groups.
- spearman / kendall: per ranked group, Spearman rho / Kendall tau-b between human values and judge scores;
  a group whose scores are all equal or contain a None contributes 0 (no signal). Mean over ranked groups.
  They are computed here rather than by scipy.stats (~0.2 ms a call, and the random baseline makes 200 calls
  per group); the tests check them against scipy.stats.spearmanr and scipy.stats.kendalltau (tau-b).
- responses, parse_failures (None scores) and parse_failure_rate = parse_failures / responses: over all groups.
- mean_score and score_histogram {str(score rounded half up): count}: over all scored responses. mean_score is
  None when nothing was scored.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr

FIVE = 4.5  # the lowest score that rounds to 5


def judge_metrics(groups: list[dict[str, Any]]) -> dict[str, Any]:
    total: Counter = Counter()
    exact, top1, rhos, taus = [], [], [], []
    scored: list[tuple[float, int]] = []
    humans: list[float] = []
    for g in groups:
        responses = g["responses"]
        total["groups"] += 1
        stats = _pair_counts(responses)
        total.update(stats)
        scored += [(r["score"], len(r["text"])) for r in responses if r.get("score") is not None]
        humans += [r["human"] for r in responses if r.get("score") is not None]
        if len({r["human"] for r in responses}) < 2:
            continue
        exact.append(float(stats["mismatch"] == 0))
        top1.append(_top1(responses))
        rho, tau = _correlations(responses, stats)
        rhos.append(rho)
        taus.append(tau)
        total.update(_five_best(responses))
    pairs, short = total["pairs"], total["short_pairs"]
    responses, failures = total["responses"], total["responses"] - len(scored)
    return {
        "groups": total["groups"],
        "pairs": pairs,
        "agree": total["agree"],
        "tie": total["tie"],
        "disagree": total["disagree"],
        "pairwise_accuracy": _accuracy(total["agree"], total["tie"], pairs),
        "shorter_preferred_pairs": short,
        "shorter_preferred_accuracy": _accuracy(total["short_agree"], total["short_tie"], short),
        "length_correlation": _length_correlation(scored),
        "partial_correlation": _partial_correlation(scored, humans),
        "correlation_groups": len(exact),
        "exact_match": _mean(exact),
        "five_best": total["five_best"] / total["five_best_n"] if total["five_best_n"] else None,
        "five_best_n": total["five_best_n"],
        "top1": _mean(top1),
        "spearman": _mean(rhos),
        "kendall": _mean(taus),
        "responses": responses,
        "parse_failures": failures,
        "parse_failure_rate": failures / responses if responses else None,
        "mean_score": _mean([s for s, _ in scored]),
        "score_histogram": _histogram([s for s, _ in scored]),
    }


def baseline_metrics(groups: list[dict[str, Any]], seed: int = 0, draws: int = 200) -> dict[str, dict[str, Any]]:
    """What a judge must beat: "length" scores each response by its length (longer = better), "random" is the
    mean of `draws` judges scoring uniformly in [0, 5), seeded so reruns print the same numbers."""
    rng = random.Random(seed)
    runs = [judge_metrics(_rescored(groups, lambda r: rng.random() * 5)) for _ in range(draws)]
    return {"length": judge_metrics(_rescored(groups, lambda r: len(r["text"]))), "random": _mean_runs(runs)}


_COLUMNS = [  # header, metric key, format
    ("pairs", "pairs", "int"), ("pairwise acc %", "pairwise_accuracy", "pct"),
    ("shorter-pref acc %", "shorter_preferred_accuracy", "pct"), ("len corr", "length_correlation", "num"),
    ("partial corr | len", "partial_correlation", "num"),
    ("exact %", "exact_match", "pct"), ("5-best %", "five_best", "pct"), ("top1 %", "top1", "pct"),
    ("spearman", "spearman", "num"), ("kendall", "kendall", "num"), ("parse fail %", "parse_failure_rate", "pct"),
]


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Judge results beside the baselines, one row each, for a terminal or a log."""
    table = [[""] + [head for head, _, _ in _COLUMNS]]
    table += [[name] + [_cell(metrics.get(key), kind) for _, key, kind in _COLUMNS] for name, metrics in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [[cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
             for row in table]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def _pair_counts(responses: list[dict[str, Any]]) -> Counter:
    """One pass over the pairs of a group, for every pairwise count and the Kendall counts alike."""
    c: Counter = Counter(responses=len(responses))
    for a, b in combinations(responses, 2):
        dh = _sign(a["human"] - b["human"])
        ds = None if a.get("score") is None or b.get("score") is None else _sign(a["score"] - b["score"])
        c["mismatch"] += ds != dh
        c["human_ties"] += dh == 0
        c["judge_ties"] += ds == 0
        c["concordant"] += ds is not None and ds * dh > 0
        c["discordant"] += ds is not None and ds * dh < 0
        if dh == 0:
            continue
        outcome = "agree" if ds == dh else "disagree" if ds == -dh else "tie"
        c["pairs"] += 1
        c[outcome] += 1
        preferred, other = (a, b) if dh > 0 else (b, a)
        if len(preferred["text"]) < len(other["text"]):
            c["short_pairs"] += 1
            c["short_" + outcome] += 1
    return c


def _correlations(responses: list[dict[str, Any]], c: Counter) -> tuple[float, float]:
    """Spearman rho and Kendall tau-b of one ranked group, 0 for a judge that gave no usable order."""
    scores = [r.get("score") for r in responses]
    if None in scores or len(set(scores)) < 2:
        return 0.0, 0.0
    humans = [r["human"] for r in responses]
    rho = _pearson(_ranks(humans), _ranks(scores))
    n0 = len(responses) * (len(responses) - 1) // 2
    tau = (c["concordant"] - c["discordant"]) / math.sqrt((n0 - c["human_ties"]) * (n0 - c["judge_ties"]))
    return rho, tau


def _top1(responses: list[dict[str, Any]]) -> float:
    best = max(r["human"] for r in responses)
    keys = [-math.inf if r.get("score") is None else r["score"] for r in responses]
    top = [r for r, key in zip(responses, keys) if key == max(keys)]
    return sum(r["human"] == best for r in top) / len(top)


def _five_best(responses: list[dict[str, Any]]) -> Counter:
    best = max(r["human"] for r in responses)
    fives = [r for r in responses if r.get("score") is not None and r["score"] >= FIVE]
    return Counter(five_best_n=len(fives), five_best=sum(r["human"] == best for r in fives))


def _length_correlation(scored: list[tuple[float, int]]) -> float | None:
    scores, lengths = [s for s, _ in scored], [n for _, n in scored]
    if len(scored) < 3 or len(set(scores)) < 2 or len(set(lengths)) < 2:
        return None
    return float(spearmanr(scores, lengths).statistic)


def _partial_correlation(scored: list[tuple[float, int]], humans: list[float]) -> float | None:
    if len(scored) < 4 or len({s for s, _ in scored}) < 2 or len(set(humans)) < 2 or len({n for _, n in scored}) < 2:
        return None
    s, n, h = (rankdata(x) for x in ([x for x, _ in scored], [y for _, y in scored], humans))
    r_sh, r_sl, r_hl = (float(np.corrcoef(a, b)[0, 1]) for a, b in ((s, h), (s, n), (h, n)))
    if not all(map(math.isfinite, (r_sh, r_sl, r_hl))) or 1 - r_hl ** 2 <= 1e-12:
        return None
    if 1 - r_sl ** 2 <= 1e-12:
        return 0.0  # the score is a function of length: at fixed length it says nothing
    return (r_sh - r_sl * r_hl) / math.sqrt((1 - r_sl ** 2) * (1 - r_hl ** 2))


def _ranks(xs: list[float]) -> list[float]:
    """Average ranks (1-based, ties share their mean rank), as scipy.stats.rankdata gives them."""
    return [sum(y < x for y in xs) + (sum(y == x for y in xs) + 1) / 2 for x in xs]


def _pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _accuracy(agree: int, tie: int, pairs: int) -> float | None:
    return (agree + 0.5 * tie) / pairs if pairs else None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _histogram(scores: list[float]) -> dict[str, int]:
    counts = Counter(math.floor(s + 0.5) for s in scores)  # half up: 4.5 is a 5, as in five_best
    return {str(k): counts[k] for k in sorted(counts)}


def _rescored(groups: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]) -> list[dict[str, Any]]:
    return [{**g, "responses": [{**r, "score": score(r)} for r in g["responses"]]} for g in groups]


def _mean_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per numeric metric, the mean over the runs where it was defined; None if it never was."""
    out = {}
    for key in runs[0] if runs else []:
        if key != "score_histogram":
            values = [m[key] for m in runs if isinstance(m[key], (int, float))]
            out[key] = _mean(values)
    return out


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    return {"int": f"{round(value)}", "pct": f"{100 * value:.1f}", "num": f"{value:.3f}"}[kind]
