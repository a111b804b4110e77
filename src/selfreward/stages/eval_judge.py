"""Stage eval-judge: M_t as a judge (M0 = the base model) against the human rankings of data.eft_eval.

It uses the run's own judge settings (template, mode, k), so the number measures the judge that builds the
pairs. Raw judgments go to eval/judge-M<t>.judgments.jsonl, the metrics with their baselines to
eval/judge-M<t>.json.
"""

from __future__ import annotations

from selfreward.config import RunConfig
from selfreward.data.judge_sets import load_judge_set
from selfreward.judge import load_template
from selfreward.judge_eval import evaluate, limit_groups, table
from selfreward.models import resolve_model
from selfreward.records import write_json, write_jsonl
from selfreward.rundir import RunDir
from selfreward.stages import open_generator


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    groups, _ = load_judge_set(cfg.data.eft_eval)
    groups = limit_groups(groups, cfg.judge_eval.max_prompts, cfg.seed)
    model = resolve_model(cfg.model) if t == 0 else str(rd.policy(t))
    gen = open_generator(cfg, model)
    try:
        rows, result = evaluate(gen, load_template(cfg.judge.template), groups, cfg.judge, cfg.seed,
                                desc=f"eval-judge M{t}")
    finally:
        gen.close()
    write_jsonl(rd.eval_dir / f"judge-M{t}.judgments.jsonl", rows)
    write_json(rd.eval_dir / f"judge-M{t}.json", {"model": f"M{t}", "path": model, "mode": cfg.judge.mode, **result})
    print(table(f"M{t} ({cfg.judge.mode})", result), flush=True)
    j = result["judge"]
    return {"model": f"M{t}", "mode": cfg.judge.mode, "prompts": len(groups), "pairs": j["pairs"],
            "pairwise_accuracy": _r(j["pairwise_accuracy"]), "shorter_preferred_accuracy":
            _r(j["shorter_preferred_accuracy"]), "length_correlation": _r(j["length_correlation"]),
            "parse_failure_rate": _r(j["parse_failure_rate"]), "mean_score": _r(j["mean_score"]),
            "length_baseline_accuracy": _r(result["length"]["pairwise_accuracy"])}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
