"""Stage eval-judge: M_t's reward (M0 = the base model) against human rankings: data.eft_eval (judge_eval.max_prompts
of its prompts) and every set in judge_eval.sets.

It uses the run's own reward settings (reward.source; for the rubric, judge.template, mode and k), so the number
measures the reward that builds the pairs when the model judges itself. Raw rows go to
eval/judge-M<t>.judgments.jsonl, the metrics with the length and random baselines to eval/judge-M<t>.json; a set of
judge_eval.sets to eval/judge-M<t>-<set>.json(l). The implicit reward needs the model M_t was trained from, so it
is not evaluated for M0.
"""

from __future__ import annotations

from pathlib import Path

from selfreward.judges.agreement import judge_set, limit_groups
from selfreward.judges.sets import load_judge_set
from selfreward.judges.sources import run_reward
from selfreward.models import resolve_model
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    cfg, t = ctx.cfg, ctx.t
    r = cfg.reward
    uses_implicit = "implicit" in (r.ensemble if r.source == "ensemble" else [r.source])
    head = {"model": f"M{t}", "source": r.source, "mode": cfg.judge.mode}
    if uses_implicit and t == 0:
        print(f"eval-judge M0: skipped (reward.source={r.source} needs the model M0 was trained from)", flush=True)
        return {**head, "skipped": "the implicit reward has no reference for the base model"}
    model = resolve_model(cfg.model) if t == 0 else str(ctx.rd.policy(t))
    reference = None if t == 0 else resolve_model(cfg.model) if t == 1 else str(ctx.rd.policy(t - 1))
    # judge.backend belongs to the model that judges in the loop: M_t itself unless judge.model names another.
    role = "policy" if cfg.judge.model else "judge"

    def score(cands: list[dict]) -> list[dict]:
        return run_reward(cfg, cands, ctx.opener, judge=model, judge_role=role, policy=model, reference=reference,
                          seed=cfg.seed, desc=f"eval-judge M{t}")

    groups = limit_groups(load_judge_set(cfg.data.eft_eval)[0], cfg.judge_eval.max_prompts, cfg.seed)
    title = f"M{t} ({r.source}{', ' + cfg.judge.mode if r.source in ('rubric', 'ensemble') else ''})"
    main = judge_set(score, groups, cfg.seed, ctx.rd.eval_dir, f"judge-M{t}", {**head, "path": model}, title)
    stats = {**head, "prompts": len(groups), **_brief(main)}
    for spec in cfg.judge_eval.sets:
        name = set_name(spec)
        result = judge_set(score, load_judge_set(spec)[0], cfg.seed, ctx.rd.eval_dir, f"judge-M{t}-{name}",
                           {**head, "path": model, "data": spec}, f"{title} on {name}")
        stats[f"set:{name}"] = _brief(result)
    return stats


def set_name(spec: str) -> str:
    return spec.removeprefix("builtin:") if spec.startswith("builtin:") else Path(spec).stem


def _brief(result: dict) -> dict:
    j = result["judge"]
    # rates unrounded: the tables print them as percentages, and a rate rounded twice can print wrong (8.854% as 8.8%)
    brief = {k: j[k] for k in ("pairwise_accuracy", "shorter_preferred_accuracy", "parse_failure_rate")}
    brief.update({k: _r(j[k]) for k in ("length_correlation", "partial_correlation", "mean_score")})
    brief.update(pairs=j["pairs"], length_baseline_accuracy=result["length"]["pairwise_accuracy"],
                 random_baseline_accuracy=result["random"]["pairwise_accuracy"])
    if "ensemble" in result:
        brief["ensemble_coverage"] = result["ensemble"]["coverage"]
        brief["ensemble_accuracy_on_agreed"] = result["ensemble"]["accuracy_on_agreed"]
    return brief


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


STAGE = StageSpec("eval-judge", run, deps=("model.name", "model.dtype", "model.trust_remote_code",
                                           "model.chat_template", "data.eft_eval", "judge.template", "judge.mode",
                                           "judge.k", "judge.temperature", "judge.top_p", "judge.max_new_tokens",
                                           "judge.model", "reward", "judge_eval", "seed"),
                  reads=("{policy}",), writes=("eval/judge-M{t}.json", "eval/judge-M{t}.judgments.jsonl"),
                  summary="M_t's reward against human rankings, beside the length and random baselines")
