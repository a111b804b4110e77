"""The commands that measure or make judges: eval-judge and build-eft."""

from __future__ import annotations

import json
from pathlib import Path

from selfreward.commands.run import check_inputs, recipe_path
from selfreward.config import load_config
from selfreward.errors import UserError


def eval_judge(ns) -> int:
    from selfreward.backends import open_generator
    from selfreward.config import ModelConfig
    from selfreward.judges.agreement import judge_set, limit_groups
    from selfreward.judges.sets import load_judge_set
    from selfreward.judges.sources import run_reward
    from selfreward.models import resolve_model

    overrides = list(ns.overrides) + [f"model.name={ns.model}"] + ([f"judge.mode={ns.mode}"] if ns.mode else []) \
        + ([f"reward.source={ns.reward}"] if ns.reward else [])
    cfg = load_config(recipe_path(ns.config) if ns.config else None, overrides)
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    r = cfg.reward
    if "implicit" in (r.ensemble if r.source == "ensemble" else [r.source]) and not ns.reference:
        raise UserError(f"reward.source={r.source} compares the model with the one it was trained from: give that "
                        "one with --reference (for an SFT model, its base model)")
    sets = [(spec, *load_judge_set(spec)) for spec in ns.data or ["builtin"]]  # every file checked before work

    def path(name: str) -> str:
        return resolve_model(ModelConfig(name=name, cache_dir=cfg.model.cache_dir,
                                         trust_remote_code=cfg.model.trust_remote_code))

    model, reference = path(ns.model), path(ns.reference) if ns.reference else None
    out = Path(ns.out or f"judge-evals/{slug(ns.model)}")
    label = r.source + (f", {cfg.judge.mode}" if r.source in ("rubric", "ensemble") else "")

    def score(cands: list[dict]) -> list[dict]:
        return run_reward(cfg, cands, open_generator, judge=model, judge_role="judge", policy=model,
                          reference=reference, seed=cfg.seed, desc=f"eval-judge ({label})")

    for spec, groups, notes in sets:
        groups = limit_groups(groups, ns.max_prompts, cfg.seed)
        name = "eft_eval" if spec == "builtin" else spec.removeprefix("builtin:") if spec.startswith("builtin:") \
            else Path(spec).stem
        print(f"\n{name}: {len(groups)} prompts, {sum(len(g['responses']) for g in groups)} responses"
              + "".join(f"; {n}" for n in notes), flush=True)
        # the rubric's files keep their names (NAME.sample / NAME.expected); other sources add theirs
        tag = cfg.judge.mode if r.source == "rubric" else label.replace(", ", "-")
        judge_set(score, groups, cfg.seed, out, f"{name}.{tag}",
                  {"model": ns.model, "path": model, "reference": reference, "source": r.source, "mode": cfg.judge.mode,
                   "data": spec, "notes": notes}, f"{ns.model} ({label})")
    print(f"\nJudgments and metrics in {out}/")
    return 0


def build_eft(ns) -> int:
    from selfreward import pipeline
    from selfreward.commands.build_eft import run_build
    from selfreward.judges.agreement import limit_groups
    from selfreward.judges.sets import load_judge_set

    cfg = load_config(recipe_path(ns.config) if ns.config else None, ns.overrides)
    if not 0 <= ns.eval_fraction < 1:
        raise UserError(f"--eval-fraction must be in [0, 1), got {ns.eval_fraction}")
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    groups, notes = load_judge_set(ns.data)
    groups = limit_groups(groups, ns.max_prompts, cfg.seed)
    if not ns.model:
        check_inputs(cfg)
    print(f"{ns.data}: {len(groups)} prompts, {sum(len(g['responses']) for g in groups)} responses"
          + "".join(f"; {n}" for n in notes), flush=True)
    stats = run_build(cfg, groups, Path(ns.out), ns.model, ns.eval_fraction, pipeline.argv())
    print(json.dumps(stats, indent=1))
    print(f"\nEFT data in {ns.out}/eft_train.jsonl and {ns.out}/eft_eval.jsonl; train on it with "
          f"data.eft_train={ns.out}/eft_train.jsonl")
    return 0


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/").replace("/", "__"))[-80:]


