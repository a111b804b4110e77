"""Stage pairs: the chosen and the rejected answer per prompt, under the length rules of pairs.* (see
`selfreward.pairs`); with an ensemble reward, only pairs that both sources order the same way."""

from __future__ import annotations

import statistics

from selfreward.judgment_rows import check_judgments
from selfreward.pairs import auto_length_penalty, build_pairs, rho_for
from selfreward.records import read_jsonl, write_jsonl
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    rd, t, c = ctx.rd, ctx.t, ctx.cfg.pairs
    candidates = read_jsonl(rd.artifact(t, "candidates.jsonl"))
    judgments = read_jsonl(rd.artifact(t, "judgments.jsonl"))
    check_judgments(candidates, judgments, rd.artifact(t, "judgments.jsonl"),
                    candidates_where=rd.artifact(t, "candidates.jsonl"))
    rho = rho_for(c.length_control, t)
    agree = None
    if any(j.get("source") == "ensemble" for j in judgments):
        second = ctx.cfg.reward.ensemble[1]
        agree = {j["candidate_id"]: (j.get("sources") or {}).get(second, {}).get("score") for j in judgments}
    alpha = auto_length_penalty(candidates, judgments, rho, agree) if c.length_penalty == "auto" \
        else c.length_penalty or 0.0
    pairs, dropped = build_pairs(candidates, judgments, rho, alpha, agree)
    write_jsonl(rd.artifact(t, "pairs.jsonl"), pairs)

    def mean_len(key: str) -> float | None:
        return round(statistics.fmean(len(p[key]) for p in pairs), 1) if pairs else None

    return {"pairs": len(pairs), "dropped": dict(dropped), "length_control": rho, "length_penalty": alpha,
            "mean_chosen_chars": mean_len("chosen"), "mean_rejected_chars": mean_len("rejected")}


STAGE = StageSpec("pairs", run, deps=("pairs", "reward.ensemble"),
                  reads=("iter{t}/candidates.jsonl", "iter{t}/judgments.jsonl"), writes=("iter{t}/pairs.jsonl",),
                  command=True, summary="best vs worst judged answer per prompt, under the length rules")
