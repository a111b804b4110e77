"""EFT (judge-training) data the paper's way: the model's own rubric judgments, kept where they match humans.

The IFT-only SFT model judges every response of prompts with >= 2 human-ranked responses. A prompt's judgments
become training targets only if their scores order the responses as the humans did, so the judge is taught its
own wording with the humans' preferences. The most frequent score is then thinned (the paper's 4s), so the judge
does not learn to answer one number, and the rows are split by prompt into train and eval.

Everything here is pure: the judging itself is `selfreward.judges.scorers.score_items`, run by the caller.
Inputs:
    groups      [{"id": str, "prompt": str, "responses": [{"text": str, "human": float, "id": str?}, ...]}]
    judge_rows  one `score_items` row per response, flattened over groups in order.
Output rows (the EFT format of `selfreward.data`, plus provenance):
    {"id", "prompt_id", "prompt", "response", "human_score", "score", "target", "source": "build-eft"}
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from selfreward.errors import UserError
from selfreward.judges.rubric import score_prefix
from selfreward.judges.rubric_parse import MAX_SCORE, parse_score

SOURCE = "build-eft"
REASONS = ("unscored", "no human order", "disagrees")


def pick_judgment(row: dict[str, Any]) -> tuple[str, int] | None:
    """The judgment text that becomes the EFT target, and its integer score; None when there is none to use.

    The target must be something the model wrote and must end in a score the loader and the judge parser read
    back as exactly that score, hence the re-parse. In sample mode the most typical of the integer-scored texts
    stands for the row (fractional scores such as 4.5 are not on the 0-5 rubric a target teaches). In expected
    mode the greedy text is cut at its own score label and given the most probable digit, which is what greedy
    decoding would have written; the lowest digit wins an exact tie in probability.
    """
    if row["mode"] == "sample":
        mean = row["score"]
        if mean is None:
            return None
        candidates = [(raw, int(s)) for raw, s in zip(row["raw"], row["scores"])
                      if s is not None and float(s).is_integer() and 0 <= s <= MAX_SCORE and parse_score(raw) == s]
        if not candidates:
            return None
        text, score = min(candidates, key=lambda c: abs(c[1] - mean))  # min keeps the first on ties
        return text.strip(), score
    if row["mode"] == "expected":
        probs = row.get("digit_probs")
        if probs is None:
            return None
        score = max(range(len(probs)), key=lambda d: probs[d])
        text = f"{score_prefix(row['raw'][0])} {score}".strip()
        # An earlier score in the cut text (a quoted "Score: 5") would contradict the digit: the target is unusable.
        return (text, score) if parse_score(text) == score else None
    raise ValueError(f"unknown judge row mode {row['mode']!r}")


def agrees(human: list[float], judge: list[int | None]) -> str:
    """"kept", or why a prompt's judgments cannot teach the human order: "unscored", "no human order",
    "disagrees". A judge tie on a pair the humans ordered is a disagreement (the judge missed the order); pairs
    the humans tied impose nothing, since the ranking says nothing about them."""
    if len(human) != len(judge):
        raise ValueError(f"{len(human)} human values but {len(judge)} judge scores")
    if any(s is None for s in judge):
        return "unscored"
    if len(set(human)) < 2:
        return "no human order"
    for i in range(len(human)):
        for j in range(i + 1, len(human)):
            if human[i] != human[j] and (human[i] - human[j]) * (judge[i] - judge[j]) <= 0:
                return "disagrees"
    return "kept"


def rebalance(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Rows with the most frequent "score" cut at random to the runner-up's count, survivors in their order.

    A judge trained on data dominated by one score learns to answer that score (the paper thins its 4s). With a
    single score value there is no runner-up to cut to: the rows come back unchanged and the caller reports it.
    """
    counts = Counter(r["score"] for r in rows)
    if len(counts) < 2:
        return list(rows)
    (top, n_top), (_, n_second) = counts.most_common(2)
    dominant = [i for i, r in enumerate(rows) if r["score"] == top]
    dropped = set(dominant) - set(random.Random(seed).sample(dominant, n_second))
    return [r for i, r in enumerate(rows) if i not in dropped]


def split(rows: list[dict[str, Any]], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval) by "prompt_id", so no prompt is judged in eval after being trained on. A hash rather than
    a shuffle keeps each prompt's side fixed whatever else is in the data."""
    if not 0 <= eval_fraction <= 1:
        raise UserError(f"the EFT eval fraction must be in [0, 1], got {eval_fraction}")
    train, evals = [], []
    for r in rows:
        (evals if _bucket(seed, r["prompt_id"]) < eval_fraction else train).append(r)
    return train, evals


def _bucket(seed: int, prompt_id: Any) -> float:
    digest = hashlib.sha256(f"{seed}\x00{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def build(groups: list[dict[str, Any]], judge_rows: list[dict[str, Any]], eval_fraction: float = 0.25,
          seed: int = 0) -> dict[str, Any]:
    """{"train", "eval", "stats"}: the agreement filter, rebalancing and split over judged groups.

    Responses with blank text are left out of the output even in kept groups: the EFT loader rejects an empty
    response, and the group's agreement was still checked with them.
    """
    n_responses = sum(len(g["responses"]) for g in groups)
    if len(judge_rows) != n_responses:
        raise UserError(f"build-eft: {len(judge_rows)} judge rows for {n_responses} responses in "
                        f"{len(groups)} groups; they must match one to one, in order")
    dropped = Counter({reason: 0 for reason in REASONS})
    kept: list[dict[str, Any]] = []
    unscored = blank = 0
    start = 0
    for g in groups:
        responses = g["responses"]
        picks = [pick_judgment(r) for r in judge_rows[start:start + len(responses)]]
        start += len(responses)
        unscored += sum(p is None for p in picks)
        verdict = agrees([r["human"] for r in responses], [p[1] if p else None for p in picks])
        if verdict != "kept":
            dropped[verdict] += 1
            continue
        for i, (resp, (target, score)) in enumerate(zip(responses, picks)):
            if not resp["text"].strip():
                blank += 1
                continue
            kept.append({"id": resp.get("id") or f"{g['id']}-{i}", "prompt_id": g["id"], "prompt": g["prompt"],
                         "response": resp["text"], "human_score": resp["human"], "score": score, "target": target,
                         "source": SOURCE})
    groups_kept = len(groups) - sum(dropped.values())
    if not kept:
        raise UserError(
            f"build-eft: no judgment kept from {len(groups)} groups ({dropped['unscored']} unscored, "
            f"{dropped['no human order']} with no human order, {dropped['disagrees']} disagreeing with the human "
            "order); try a judge model that writes the rubric format (e.g. an SFT model trained with EFT), "
            "or the human-score route (data.eft_train=builtin)")
    balanced = rebalance(kept, seed)
    train, evals = split(balanced, eval_fraction, seed)
    stats = {
        "groups_in": len(groups), "responses_in": n_responses, "responses_unscored": unscored,
        "groups_kept": groups_kept, "groups_dropped": dict(dropped), "responses_blank_dropped": blank,
        "rows_kept": len(kept), "rows_rebalanced": len(balanced),
        "score_hist_kept": _histogram(kept), "score_hist_rebalanced": _histogram(balanced),
        "train_rows": len(train), "eval_rows": len(evals),
        "train_prompts": len({r["prompt_id"] for r in train}), "eval_prompts": len({r["prompt_id"] for r in evals}),
    }
    return {"train": train, "eval": evals, "stats": stats}


def _histogram(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["score"] for r in rows)
    return {str(s): counts[s] for s in range(MAX_SCORE + 1)}
