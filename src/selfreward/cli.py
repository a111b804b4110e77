"""Command line: `selfreward run` for the whole loop, one command per stage, and `status`."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.rundir import RunDir, Stage, plan

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
    prev = None
    for stage in plan(cfg.iterations):
        print(f"{str(stage):28s} {rd.state(stage, cfg, prev)}")
        prev = stage
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
    resolve_model(cfg.model)


def _accelerate_config_path(name: str) -> str:
    path = _path_or_shipped(name, name)
    if path is None:
        raise UserError(f"accelerate config not found: {name} (accelerate_config)")
    return str(path)


COMMANDS = {"run": _run, "status": _status}
