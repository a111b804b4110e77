"""Stage eval (M_t, t >= 1): M_t on the benchmark suites of eval.suites (selfreward.evals.runner), and its greedy
answers to the prompts iteration 1 held back, which the compare stages read. Suites that need a judge use
eval.judge, else judge.model, else M_t itself (selfreward.compare.eval_judge)."""

from __future__ import annotations

from selfreward.compare import eval_judge, judge_target, resolve_judge
from selfreward.evals.runner import JUDGED, evaluate_model
from selfreward.records import read_jsonl
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    cfg, rd, t = ctx.cfg, ctx.rd, ctx.t
    heldout = None
    if cfg.eval.compare_prompts > 0:
        heldout = [{"id": p["id"], "instruction": p["prompt"]}
                   for p in read_jsonl(rd.artifact(1, "prompts.heldout.jsonl"))]
    spec = eval_judge(cfg) if set(cfg.eval.suites) & set(JUDGED) else None
    judge_cfg, judge = judge_target(cfg, spec, "eval.judge") if spec else (cfg, None)
    return {"model": f"M{t}", **evaluate_model(cfg, str(rd.policy(t)), f"M{t}", rd.eval_dir, heldout, judge,
                                               opener=ctx.opener, judge_cfg=judge_cfg,
                                               judge_label=resolve_judge(spec)[1] if spec else None)}


# The eval.* keys it reads, one by one: eval.margin, eval.judge_mode and eval.judge_check_pairs are compare's alone.
STAGE = StageSpec("eval", run, deps=("model.dtype", "model.trust_remote_code", "model.chat_template", "eval.suites",
                                     "eval.max_prompts", "eval.compare_prompts", "eval.max_new_tokens",
                                     "eval.alpaca_reference", "eval.judge", "judge.model", "judge.max_new_tokens",
                                     "seed"),
                  reads=("{policy}", "iter1/prompts.heldout.jsonl"),
                  writes=("eval/ifeval-M{t}.json", "eval/answers-M{t}.heldout.jsonl"),
                  summary="M_t on the benchmark suites and the held-back prompts")
