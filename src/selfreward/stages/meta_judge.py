"""Stage meta-judge (Meta-Rewarding, meta.enabled; between judge and pairs): M_t, as meta-judge, compares two of
its own judgments of an answer whose judgments disagree, in both orders; the judgments get Elo ratings, and the
best- against the worst-rated judgment of an answer is a judge pair, which the dpo stage trains on beside the actor
pairs (at most meta.judge_pair_share of them). The method is written down in `selfreward.judges.meta`.

Writes iter{t}/meta_judgments.jsonl, one row per answer meta-judged: its valid judgments with score, length and
rating, and every comparison with both orders' evidence (the option probabilities of a forced choice, or the raw
verdict texts of a generated one); and iter{t}/judge_pairs.jsonl: prompt = the rubric judge prompt of the answer,
chosen and rejected = judgment texts. An iteration whose judge_pair_share is 0 writes both empty. Only a run with
meta.enabled has the stage in its chain (judge -> meta-judge -> pairs) and trains on its judge pairs; run on its own
(`selfreward meta-judge RUN --iteration T`) without it, it writes its files and nothing reads them.

Also the collapse guard of the judge stage (`collapse_guard`), which runs in every run, with meta-judging or not.
"""

from __future__ import annotations

from selfreward.backends import AUTO, CAPABILITIES, GENERATE, OPTION_PROBS, role_backend
from selfreward.compare import greedy
from selfreward.errors import UserError
from selfreward.judges import meta, templates
from selfreward.pairs import rho_for
from selfreward.records import read_jsonl, write_jsonl
from selfreward.rundir import META_JUDGE, RunDir, Stage
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    cfg, t, m = ctx.cfg, ctx.t, ctx.cfg.meta
    candidates = read_jsonl(ctx.rd.artifact(t, "candidates.jsonl"))
    judgments = read_jsonl(ctx.rd.artifact(t, "judgments.jsonl"))
    share = rho_for(m.judge_pair_share, t)
    answers = meta.disagreeing_answers(candidates, judgments, m.answers_per_prompt) if share > 0 else []
    rated, verdict = [], None
    if answers:
        backend = role_backend(cfg, "judge")[0]
        # Forced choice where the judge's backend gives probabilities; a server's judge writes verdicts instead.
        can = backend == AUTO or OPTION_PROBS in CAPABILITIES[backend]
        gen = ctx.generator(ctx.model_for(cfg.judge.model), role="judge",
                            needs=frozenset({GENERATE, OPTION_PROBS} if can else {GENERATE}))
        try:
            verdict = "forced choice" if OPTION_PROBS in gen.capabilities else "generated"
            rated = meta.meta_judge(gen, answers, greedy(m.max_new_tokens, cfg.seed + 2000 * t + 1), m.template,
                                    desc=f"meta-judge {t} (both orders)")
        finally:
            gen.close()
    pairs, dropped = meta.judge_pair_rows(answers, rated, templates.load("rubric", cfg.judge.template),
                                          m.max_judge_pairs_per_answer, m.max_judgment_chars)
    write_jsonl(ctx.rd.artifact(t, "meta_judgments.jsonl"), rated)
    write_jsonl(ctx.rd.artifact(t, "judge_pairs.jsonl"), pairs)
    comparisons = sum(len(r["comparisons"]) for r in rated)
    return {"meta_answers": len(rated), "meta_comparisons": comparisons,
            "meta_unread": sum(r["unread"] for r in rated), "meta_verdict": verdict,
            "judge_pairs_built": len(pairs), "judge_pairs_dropped": dict(dropped), "judge_pair_share_max": share,
            "skipped": None if share > 0 else f"meta.judge_pair_share is 0 in iteration {t}"}


def judge_pairs_for_dpo(rd: RunDir, t: int) -> tuple[list[dict], float] | None:
    """(iteration t's judge pairs, the largest share of DPO's pairs they may take), or None when t's pairs were not
    built right after its meta-judge stage. That is the chain of a run with meta.enabled (rundir.previous), read
    from the done-markers, so judge pairs left over from an earlier setting are never trained on. The share is the
    one the meta-judge stage ran under (its marker's config); a changed share redoes that stage, and after it pairs
    and dpo, through the markers' token chain."""
    meta_marker, pairs_marker = rd.marker(Stage(META_JUDGE, t)), rd.marker(Stage("pairs", t))
    if meta_marker is None or pairs_marker is None or pairs_marker["after"] != meta_marker["token"]:
        return None
    share = rho_for(meta_marker["config"].get("meta.judge_pair_share", 0.0), t)
    return read_jsonl(rd.artifact(t, "judge_pairs.jsonl")), share or 0.0


def collapse_guard(ctx: Context, rows: list[dict], stats: dict) -> dict:
    """The judge stage's stats with the distribution of its valid rubric scores (judges.meta.score_distribution).
    When one score is more than meta.collapse_share of them, the run says so on a line of its own and the stats keep
    the line as "collapse"; with meta.stop_on_collapse it stops instead, with a one-line UserError (the judgments
    stay in judgments.jsonl, and the judge stage is redone on the next run)."""
    m = ctx.cfg.meta
    dist = meta.score_distribution(meta.rubric_scores(rows))
    warning = meta.collapse_message(dist, m.collapse_share)
    if warning is None:
        return {**stats, **dist}
    where = ctx.rd.artifact(ctx.t, "judgments.jsonl")
    if m.stop_on_collapse:
        raise UserError(f"iteration {ctx.t}: {warning}; stopped (meta.stop_on_collapse); the judgments are in "
                        f"{where}; set meta.stop_on_collapse=false to go on regardless")
    print(f"[warn] iteration {ctx.t}: {warning} (judgments in {where})", flush=True)
    return {**stats, **dist, "collapse": warning}


STAGE = StageSpec(META_JUDGE, run,
                  deps=("model.name", "model.dtype", "model.trust_remote_code", "model.chat_template", "judge.template",
                        "judge.model", "meta.enabled", "meta.template", "meta.answers_per_prompt",
                        "meta.judge_pair_share", "meta.max_judge_pairs_per_answer", "meta.max_judgment_chars",
                        "meta.max_new_tokens", "seed"),
                  reads=("iter{t}/candidates.jsonl", "iter{t}/judgments.jsonl", "{policy}"),
                  writes=("iter{t}/meta_judgments.jsonl", "iter{t}/judge_pairs.jsonl"), command=True,
                  summary="Meta-Rewarding: the model rates its own judgments; best vs worst judgment = judge pairs")
