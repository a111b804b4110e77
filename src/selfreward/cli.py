"""Command line: `selfreward run` for the whole loop, one command per stage, and `status`."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.rundir import RunDir, Stage, previous

STAGE_COMMANDS = ["sft", "gen-prompts", "sample", "judge", "pairs", "dpo"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfreward", description="Self-Rewarding Language Models on any HF causal LM.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="SFT, then T self-rewarding iterations; resumes an existing run directory")
    r.add_argument("--config", help="recipe YAML, or the name of a shipped recipe (tiny-cpu, 1gpu-lora, ...)")
    r.add_argument("--run-dir", help="default: runs/<recipe name>")
    r.add_argument("--redo", action="store_true", help="recompute finished stages whose settings changed")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. sample.n=4 iterations=3")
    for name in STAGE_COMMANDS:
        s = sub.add_parser(name, help=f"run (or re-run) the {name} stage of a run directory")
        s.add_argument("run_dir")
        if name != "sft":
            s.add_argument("--iteration", "-t", type=int, required=True)
        s.add_argument("overrides", nargs="*", metavar="key=value")
    st = sub.add_parser("status", help="stages done, counts, scores and lengths per iteration")
    st.add_argument("run_dir")
    ej = sub.add_parser("eval-judge", help="a model's judge against human rankings, beside the length and "
                                           "random baselines")
    ej.add_argument("--model", required=True, help="default, a Hugging Face id, or a local model directory")
    ej.add_argument("--data", action="append", help="builtin (the shipped EFT eval split), or a JSONL file: "
                    "ranked responses (prompt, response, human_score|rank), LLMBar or Auto-J pairs; repeatable")
    ej.add_argument("--mode", choices=["sample", "expected"], help="judge.mode (default: the config's)")
    ej.add_argument("--max-prompts", type=int, help="a fixed seeded subset of the prompts of each set")
    ej.add_argument("--config", help="recipe YAML or shipped recipe name, for judge.* and generation.*")
    ej.add_argument("--out", help="default: judge-evals/<model name>")
    ej.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. judge.k=3 generation.batch_size=32")
    be = sub.add_parser("build-eft", help="EFT data the paper's way: a model judges human-ranked responses; "
                                          "judgments that order them as the humans did are kept")
    be.add_argument("--data", default="builtin:eft_train",
                    help="ranked responses: builtin:eft_train (default), or a JSONL file (prompt, response, "
                         "human_score|rank; or the raw OASST2 export)")
    be.add_argument("--model", help="the judge; default: SFT of the base model on IFT only (the paper's choice), "
                                    "trained into OUT/sft")
    be.add_argument("--out", default="runs/build-eft")
    be.add_argument("--eval-fraction", type=float, default=0.25, help="share of prompts held out as eft_eval")
    be.add_argument("--max-prompts", type=int, help="a fixed seeded subset of the prompts")
    be.add_argument("--config", help="recipe YAML or shipped recipe name (model, sft, judge, generation)")
    be.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def main(args: list[str] | None = None) -> int:
    ns = parser().parse_args(args)
    try:
        return COMMANDS.get(ns.command, _stage)(ns)
    except UserError as e:
        print(f"selfreward: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfreward: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130


def _run(ns) -> int:
    from selfreward import pipeline
    from selfreward.summary import write_summary

    recipe = _recipe_path(ns.config) if ns.config else None
    run_dir = Path(ns.run_dir or f"runs/{recipe.stem if recipe else 'default'}")
    rd = RunDir(run_dir)
    if recipe is None and rd.config_path.is_file():
        recipe = rd.config_path
    cfg = load_config(recipe, ns.overrides)
    _check_inputs(cfg)
    pipeline.check_changes(rd, cfg, ns.redo)
    pipeline.prepare(rd, cfg, pipeline.argv())
    pipeline.run_all(rd, cfg)
    print("\n" + write_summary(rd, cfg.iterations))
    print(f"\nModels: M1 = {rd.policy(1)}" + "".join(f", M{t + 1} = {rd.policy(t + 1)}"
                                                    for t in range(1, cfg.iterations + 1)))
    return 0


def _stage(ns) -> int:
    from selfreward import pipeline

    rd = RunDir(ns.run_dir)
    cfg = pipeline.load_run_config(rd)
    if ns.overrides:
        cfg = load_config(rd.config_path, ns.overrides)
        pipeline.prepare(rd, cfg, pipeline.argv())
    iteration = getattr(ns, "iteration", 0)
    if ns.command != "sft" and not 1 <= iteration <= cfg.iterations:
        raise UserError(f"--iteration must be between 1 and {cfg.iterations} (iterations in {rd.config_path})")
    stats = pipeline.execute(rd, cfg, Stage(ns.command, iteration))
    print(f"{Stage(ns.command, iteration)} done: {stats}")
    return 0


def _status(ns) -> int:
    from selfreward import pipeline
    from selfreward.summary import write_summary

    rd = RunDir(ns.run_dir)
    cfg = pipeline.load_run_config(rd)
    for stage in pipeline.run_plan(cfg):
        print(f"{str(stage):28s} {rd.state(stage, cfg, previous(stage))}")
    print("\n" + write_summary(rd, cfg.iterations))
    return 0


def _path_or_shipped(name: str, shipped_name: str) -> Path | None:
    """A file given by path, else one shipped beside the recipes, else None."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = resources.files("selfreward.recipes").joinpath(shipped_name)
    return Path(str(shipped)) if shipped.is_file() else None


def _recipe_path(name: str) -> Path:
    path = _path_or_shipped(name, f"{name.removesuffix('.yaml')}.yaml")
    if path is None:
        raise UserError(f"config file not found: {name} (a path, or a shipped recipe: "
                        f"{', '.join(sorted(_shipped_recipes()))})")
    return path


def _shipped_recipes() -> list[str]:
    return [f.name.removesuffix(".yaml") for f in resources.files("selfreward.recipes").iterdir()
            if f.name.endswith(".yaml")]


def _check_inputs(cfg) -> None:
    """Fail in the first second on a bad path or data row, not after an hour of training."""
    from selfreward.data import load_eft, load_ift
    from selfreward.judge import load_template
    from selfreward.models import resolve_model

    if cfg.accelerate_config:
        cfg.accelerate_config = _accelerate_config_path(cfg.accelerate_config)
    load_template(cfg.judge.template)
    load_ift(cfg.data.ift)
    load_eft(cfg.data.eft_train, "eft_train")
    if cfg.judge_eval.max_prompts != 0:
        from selfreward.data.judge_sets import load_judge_set

        load_judge_set(cfg.data.eft_eval)
    resolve_model(cfg.model)


def _accelerate_config_path(name: str) -> str:
    path = _path_or_shipped(name, name)
    if path is None:
        raise UserError(f"accelerate config not found: {name} (accelerate_config)")
    return str(path)


def _eval_judge(ns) -> int:
    from selfreward.config import ModelConfig
    from selfreward.data.judge_sets import load_judge_set
    from selfreward.judge import load_template
    from selfreward.judge_eval import evaluate, limit_groups, table
    from selfreward.models import resolve_model
    from selfreward.records import write_json, write_jsonl
    from selfreward.stages import open_generator

    overrides = list(ns.overrides) + [f"model.name={ns.model}"] + ([f"judge.mode={ns.mode}"] if ns.mode else [])
    cfg = load_config(_recipe_path(ns.config) if ns.config else None, overrides)
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    template = load_template(cfg.judge.template)
    sets = [(spec, *load_judge_set(spec)) for spec in ns.data or ["builtin"]]  # every file checked before work
    model = resolve_model(ModelConfig(name=ns.model, cache_dir=cfg.model.cache_dir,
                                      trust_remote_code=cfg.model.trust_remote_code))
    out = Path(ns.out or f"judge-evals/{_slug(ns.model)}")
    gen = open_generator(cfg, model)
    try:
        for spec, groups, notes in sets:
            groups = limit_groups(groups, ns.max_prompts, cfg.seed)
            name = "eft_eval" if spec == "builtin" else Path(spec).stem
            rows, result = evaluate(gen, template, groups, cfg.judge, cfg.seed, desc=f"eval-judge {name}")
            write_jsonl(out / f"{name}.{cfg.judge.mode}.judgments.jsonl", rows)
            write_json(out / f"{name}.{cfg.judge.mode}.json", {"model": ns.model, "path": model, "data": spec,
                                                               "mode": cfg.judge.mode, "notes": notes, **result})
            print(f"\n{name}: {len(groups)} prompts, {sum(len(g['responses']) for g in groups)} responses"
                  + "".join(f"; {n}" for n in notes))
            print(table(f"{ns.model} ({cfg.judge.mode})", result), flush=True)
    finally:
        gen.close()
    print(f"\nJudgments and metrics in {out}/")
    return 0


def _build_eft(ns) -> int:
    from selfreward import pipeline
    from selfreward.data.judge_sets import load_judge_set
    from selfreward.judge_eval import limit_groups
    from selfreward.stages.build_eft import run_build

    cfg = load_config(_recipe_path(ns.config) if ns.config else None, ns.overrides)
    if not 0 <= ns.eval_fraction < 1:
        raise UserError(f"--eval-fraction must be in [0, 1), got {ns.eval_fraction}")
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    groups, notes = load_judge_set(ns.data)
    groups = limit_groups(groups, ns.max_prompts, cfg.seed)
    if not ns.model:
        _check_inputs(cfg)
    print(f"{ns.data}: {len(groups)} prompts, {sum(len(g['responses']) for g in groups)} responses"
          + "".join(f"; {n}" for n in notes), flush=True)
    stats = run_build(cfg, groups, Path(ns.out), ns.model, ns.eval_fraction, pipeline.argv())
    print(json.dumps(stats, indent=1))
    print(f"\nEFT data in {ns.out}/eft_train.jsonl and {ns.out}/eft_eval.jsonl; train on it with "
          f"data.eft_train={ns.out}/eft_train.jsonl")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/").replace("/", "__"))[-80:]


COMMANDS = {"run": _run, "status": _status, "eval-judge": _eval_judge, "build-eft": _build_eft}
