"""Stage judge: every candidate gets a reward from reward.source, with its raw evidence (see
`selfreward.judges.sources`): the rubric judge (M_t, or judge.model), pairwise forced choice, the DPO implicit
reward, or an ensemble of two. With sample.require_eos an answer cut off at max_new_tokens is not scored
("cut_off": true) and is counted."""

from __future__ import annotations

import math
import statistics
from collections import Counter

from selfreward.judges.sources import run_reward
from selfreward.models import resolve_model
from selfreward.records import read_jsonl, write_jsonl
from selfreward.stages.meta_judge import collapse_guard
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    cfg, t = ctx.cfg, ctx.t
    candidates = read_jsonl(ctx.rd.artifact(t, "candidates.jsonl"))
    keep = [x for x in candidates if x.get("finished", True) or not cfg.sample.require_eos]
    scored = dict(zip((x["id"] for x in keep), run_reward(
        cfg, keep, ctx.opener, judge=ctx.model_for(cfg.judge.model), judge_role="judge", policy=str(ctx.rd.policy(t)),
        reference=reference_model(ctx), seed=cfg.seed + 2000 * t, desc=f"judge {t}")))
    source = cfg.reward.source
    rows = [{"candidate_id": x["id"], "prompt_id": x["prompt_id"],
             **scored.get(x["id"], {"source": source, "score": None, "cut_off": True})} for x in candidates]
    write_jsonl(ctx.rd.artifact(t, "judgments.jsonl"), rows)
    names = cfg.reward.ensemble if source == "ensemble" else [source]
    stats = {**summarize(rows), "cut_off": len(candidates) - len(keep), **_agreement(rows, names)}
    return collapse_guard(ctx, rows, stats)  # the score distribution; says (or stops) when one score dominates


def _agreement(rows: list[dict], names: list[str]) -> dict:
    """Ensemble only: how often the two sources order two candidates of a prompt the same way (pairs where both
    are scored and neither ties), over every pair of candidates."""
    if not any(r["source"] == "ensemble" for r in rows):
        return {}
    by_prompt: dict = {}
    for r in rows:
        if r.get("sources"):
            a, b = (r["sources"][n]["score"] for n in names)
            if a is not None and b is not None:
                by_prompt.setdefault(r["prompt_id"], []).append((a, b))
    same = total = 0
    for scores in by_prompt.values():
        for i, (a1, b1) in enumerate(scores):
            for a2, b2 in scores[i + 1:]:
                if a1 != a2 and b1 != b2:
                    total += 1
                    same += (a1 > a2) == (b1 > b2)
    return {"source_agreement": round(same / total, 4) if total else None, "source_pairs": total}


def reference_model(ctx: Context) -> str:
    """pi_ref of the implicit reward: the model M_t was trained from (the base model for M1, M_(t-1) after)."""
    return resolve_model(ctx.cfg.model) if ctx.t == 1 else str(ctx.rd.policy(ctx.t - 1))


def summarize(rows: list[dict]) -> dict:
    """The score distribution. For the rubric, parse failures too (in expected mode, a judgment whose digits got
    too little probability); the 0-5 histogram is the rubric's (half up, as judges.metrics counts)."""
    first = next((r for r in rows if not r.get("cut_off")), None)
    rubric_rows = [r.get("sources", {}).get("rubric", r) for r in rows if not r.get("cut_off")]
    rubric_rows = [r for r in rubric_rows if r.get("source", "rubric") == "rubric"]
    expected = bool(rubric_rows) and rubric_rows[0]["mode"] == "expected"
    parsed = [r["score"] for r in rubric_rows] if expected else [s for r in rubric_rows for s in r["scores"]]
    valid = [s for s in parsed if s is not None]
    means = [r["score"] for r in rows if r["score"] is not None]
    rubric_means = [r["score"] for r in rubric_rows if r["score"] is not None]
    return {
        "reward_source": first.get("source", "rubric") if first else None,
        "judge_mode": rubric_rows[0]["mode"] if rubric_rows else None,
        "judgments": len(parsed),
        "parse_failures": len(parsed) - len(valid),
        "parse_failure_rate": (len(parsed) - len(valid)) / len(parsed) if parsed else 0.0,  # unrounded: tables round
        "unscored_candidates": sum(r["score"] is None for r in rows),
        "mean_score": round(statistics.fmean(means), 3) if means else None,
        "score_histogram": {str(k): v for k, v in sorted(Counter(math.floor(s + 0.5) for s in rubric_means).items())},
    }


STAGE = StageSpec("judge", run, deps=("model.name", "model.dtype", "model.trust_remote_code", "model.chat_template",
                                      "judge.template", "judge.mode", "judge.k", "judge.temperature", "judge.top_p",
                                      "judge.max_new_tokens", "judge.model", "reward", "sample.require_eos", "seed"),
                  reads=("iter{t}/candidates.jsonl", "{policy}"), writes=("iter{t}/judgments.jsonl",), command=True,
                  summary="every answer gets a reward (reward.source): rubric, pairwise, implicit or ensemble")
