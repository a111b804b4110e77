"""Stage compare (M_t, t >= 2): M_t head to head against M_{t-1}, and from t = 3 also against M1, on the prompts
iteration 1 held back from training; and the judge of the first head-to-head on human-labelled pairs.

The answers are the eval stages' (eval/answers-M<s>.heldout.jsonl, greedy). The judge is eval.judge, else
judge.model, else the older model of each pair: a model trained to please its own judge would favour itself, so
a win reported for the newer model is a conservative one. Each pair is decided in both orders, by forced choice
where the judge's backend gives next-token probabilities (eval.judge_mode, eval.margin), else by generated
verdicts (selfreward.compare). Outputs: eval/compare-M<t>-vs-M<s>.json with .verdicts.jsonl.

Judge check (eval.judge_check_pairs > 0): the judge of M_t vs M_(t-1) also decides LLMBar Natural pairs the same
way, so its head-to-head verdicts can be weighed: eval/compare-M<t>.judge-check.json (accuracy beside the length
heuristic) with .rows.jsonl. Its one judge per stage: the judge of M_t vs M1 from t = 3 is either that same
fixed judge or M1, which compare (M2) checked.
"""

from __future__ import annotations

from selfreward import compare as c
from selfreward.errors import UserError
from selfreward.records import read_jsonl, write_json, write_jsonl
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    cfg, rd, t = ctx.cfg, ctx.rd, ctx.t
    new = _answers(ctx, t)
    spec = c.eval_judge(cfg)
    e = cfg.eval
    sampling = c.greedy(cfg.judge.max_new_tokens, cfg.seed)
    stats = {}
    for s in sorted({t - 1, 1}, reverse=True):
        old = _answers(ctx, s)
        if [a["id"] for a in old] != [a["id"] for a in new]:
            raise UserError(f"{_path(ctx, s)} and {_path(ctx, t)} answer different prompts; redo the "
                            f"eval stages (selfreward run --redo)")
        judge_name = spec or f"M{s}"
        judge_cfg, judge_path = c.judge_target(cfg, spec, "eval.judge") if spec else (cfg, str(rd.policy(s)))
        judge = c.open_judge(ctx.opener, judge_cfg, judge_path, purpose=f"the {ctx.stage or 'compare'} stage's judge")
        check = None
        try:
            method, rows = c.judge_pairs(judge, [a["instruction"] for a in new], [a["answer"] for a in new],
                                       [a["answer"] for a in old], sampling, e.margin, e.judge_mode,
                                       desc=f"compare M{t} vs M{s} (judge {judge_name}, both orders)")
            if s == t - 1 and e.judge_check_pairs > 0:
                check = c.judge_check(judge, e.judge_check_pairs, e.judge_mode, sampling, cfg.seed,
                                    desc=f"compare M{t}: judge check of {judge_name} (LLMBar Natural, both orders)")
        finally:
            judge.close()
        result = {"a": f"M{t}", "b": f"M{s}", "judge": judge_name, "prompts": "iteration 1, held back",
                  **c.summarize(rows, cfg.seed, method, e.margin)}
        write_jsonl(rd.eval_dir / f"compare-M{t}-vs-M{s}.verdicts.jsonl",
                    [{"id": a["id"], **r} for a, r in zip(new, rows)])
        write_json(rd.eval_dir / f"compare-M{t}-vs-M{s}.json", result)
        print(c.table(f"M{t} (A) vs M{s} (B), judge {judge_name}, {len(rows)} prompts", result), flush=True)
        stats[f"vs_M{s}"] = c.wtl(result)  # wins/ties/losses of M_t, with the mean P(M_t better) of a forced choice
        if check is not None:
            write_jsonl(rd.eval_dir / f"compare-M{t}.judge-check.rows.jsonl", check[1])
            write_json(rd.eval_dir / f"compare-M{t}.judge-check.json", {"judge": judge_name, **check[0]})
            print(c.check_line(check[0]), flush=True)
            stats["judge_check"] = f"{_pct(check[0]['judge_accuracy'])} (length {_pct(check[0]['length_accuracy'])})"
    return stats


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _path(ctx: Context, t: int):
    return ctx.rd.eval_dir / f"answers-M{t}.heldout.jsonl"


def _answers(ctx: Context, t: int) -> list[dict]:
    path = _path(ctx, t)
    if not path.is_file():
        raise UserError(f"{path} is missing: the eval stage of M{t} writes it; run selfreward run to finish it")
    return read_jsonl(path)


STAGE = StageSpec("compare", run, deps=("model.dtype", "model.trust_remote_code", "model.chat_template",
                                        "judge.model", "judge.max_new_tokens", "eval.judge", "eval.judge_mode",
                                        "eval.margin", "eval.judge_check_pairs", "seed"),
                  reads=("eval/answers-M{t}.heldout.jsonl", "eval/answers-M{prev}.heldout.jsonl"),
                  writes=("eval/compare-M{t}-vs-M{prev}.json",),
                  summary="M_t head to head against M_(t-1) and M1, both orders; its judge on LLMBar Natural")
