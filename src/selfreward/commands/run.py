"""The commands that drive a run directory: run, one command per stage, status, report."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from selfreward import faults, pipeline
from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.rundir import LOCK, RunDir, Stage, previous, require_done


def run(ns) -> int:
    from selfreward.report import write_report
    from selfreward.summary import write_summary

    _not_empty(ns.config, "--config", "a recipe path or a shipped recipe name (leave --config out for the defaults)")
    _not_empty(ns.run_dir, "--run-dir", "a directory path")
    recipe = recipe_path(ns.config) if ns.config is not None else None
    run_dir = Path(ns.run_dir or f"runs/{recipe.stem if recipe else 'default'}")
    rd = RunDir(run_dir)
    if recipe is None and rd.config_path.exists():  # resuming: the run's own config, checked for damage
        cfg = rd.load_config(ns.overrides)
    else:
        if not rd.config_path.exists():
            _refuse_foreign_dir(rd)
        cfg = load_config(recipe, ns.overrides)
    check_inputs(cfg)
    pipeline.check_changes(rd, cfg, ns.redo)  # also reads every marker: a damaged one fails before any write
    # Everything is checked; from here on the run directory is written, by this process only.
    with rd.lock("selfreward run"):
        pipeline.check_changes(rd, cfg, ns.redo)  # again: another process may have finished a stage meanwhile
        pipeline.prepare(rd, cfg, pipeline.argv())
        pipeline.run_all(rd, cfg)
        with faults.scope("report"):
            print("\n" + write_summary(rd, cfg.iterations))
            print(f"\nReport: {write_report(rd.root)} (results.json beside it)")
    print(f"\nModels: M1 = {rd.policy(1)}" + "".join(f", M{t + 1} = {rd.policy(t + 1)}"
                                                    for t in range(1, cfg.iterations + 1)))
    return 0


def stage(ns) -> int:
    _not_empty(ns.run_dir, "RUN_DIR", "a run directory")
    rd = RunDir(ns.run_dir)
    cfg = rd.load_config(ns.overrides)
    iteration = getattr(ns, "iteration", 0)
    if ns.command != "sft" and not 1 <= iteration <= cfg.iterations:
        raise UserError(f"--iteration must be between 1 and {cfg.iterations} (iterations in {rd.config_path})")
    target = Stage(ns.command, iteration)
    before = previous(target, cfg.meta.enabled)
    if before is not None:
        require_done(rd, before)
    rd.marker(target)  # a damaged marker of the stage itself: one line now, not after the overrides are written
    if ns.overrides:
        check_inputs(cfg)
    with rd.lock(f"the {ns.command} stage"):
        if ns.overrides:
            pipeline.prepare(rd, cfg, pipeline.argv())
        stats = pipeline.execute(rd, cfg, target)
    print(f"{target} done: {stats}")
    return 0


def status(ns) -> int:
    """Reads only: works on a read-only run directory, and writes nothing (summary.json is `run`'s)."""
    from selfreward.summary import summary_text

    _not_empty(ns.run_dir, "RUN_DIR", "a run directory")
    rd = RunDir(ns.run_dir)
    cfg = rd.load_config()
    lines = [f"{str(stage):28s} {pipeline.state(rd, cfg, stage)}" for stage in pipeline.run_plan(cfg)]
    text = summary_text(rd, cfg.iterations)
    print("\n".join(lines) + "\n\n" + text)
    return 0


def report(ns) -> int:
    from selfreward.report import write_report

    _not_empty(ns.run_dir, "RUN_DIR", "a run directory")
    print(f"Report: {write_report(Path(ns.run_dir))} (numbers in {Path(ns.run_dir) / 'results.json'})")
    return 0


def _not_empty(value: str | None, name: str, what: str) -> None:
    """'' is not a path: Path('') is the current directory."""
    if value is not None and not value.strip():
        raise UserError(f"{name} is empty; give {what}")


def _refuse_foreign_dir(rd: RunDir) -> None:
    """A new run goes into a new or empty directory, never into one holding other files (a home directory)."""
    if rd.root.exists() and not rd.root.is_dir():
        raise UserError(f"{rd.root} is not a directory; give --run-dir a new or empty directory")
    if rd.root.is_dir() and any(p.name != LOCK for p in rd.root.iterdir()):
        raise UserError(f"{rd.root} is not empty and is not a run directory (no config.yaml); give --run-dir a new "
                        "or empty directory, or an existing run")


def _path_or_shipped(name: str, shipped_name: str) -> Path | None:
    """A file given by path, else one shipped beside the recipes, else None."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = resources.files("selfreward.recipes").joinpath(shipped_name)
    return Path(str(shipped)) if shipped.is_file() else None


def recipe_path(name: str) -> Path:
    path = _path_or_shipped(name, f"{name.removesuffix('.yaml')}.yaml")
    if path is None:
        raise UserError(f"config file not found: {name} (a path, or a shipped recipe: "
                        f"{', '.join(sorted(_shipped_recipes()))})")
    return path


def _shipped_recipes() -> list[str]:
    return [f.name.removesuffix(".yaml") for f in resources.files("selfreward.recipes").iterdir()
            if f.name.endswith(".yaml")]


def check_inputs(cfg) -> None:
    """Fail in the first second on a bad path or data row, not after an hour of training."""
    from selfreward.backends import require, role_backend
    from selfreward.config import AUTO, ModelConfig
    from selfreward.data import load_eft, load_ift
    from selfreward.judges import templates
    from selfreward.judges.scorers import needs
    from selfreward.models import DEFAULT_MODEL, check_model_dir, read_chat_template, resolve_model

    if cfg.accelerate_config:
        cfg.accelerate_config = _accelerate_config_path(cfg.accelerate_config)
    judge_backend = role_backend(cfg, "judge")[0]
    if judge_backend != AUTO:
        require(judge_backend, needs(cfg.judge), f"judge.mode={cfg.judge.mode}")
    templates.load("rubric", cfg.judge.template)
    load_ift(cfg.data.ift)
    load_eft(cfg.data.eft_train, "eft_train")
    if cfg.judge_eval.max_prompts != 0:
        from selfreward.judges.sets import load_judge_set

        load_judge_set(cfg.data.eft_eval)
    if cfg.model.chat_template:
        read_chat_template(cfg.model.chat_template)
    # Model directories: checked for config, tokenizer and safetensors files now, not when a stage loads them.
    served = judge_backend in ("openai", "fake")  # judge.model is then a name the backend serves
    for name in (cfg.gen_prompts.model, None if served else cfg.judge.model, cfg.eval.judge):
        if name is None or name == DEFAULT_MODEL or name.startswith("openai:"):
            continue
        if name.lower().endswith(".gguf"):  # converted now, once, and cached: a bad file fails before training
            resolve_model(ModelConfig(name=name, cache_dir=cfg.model.cache_dir,
                                      trust_remote_code=cfg.model.trust_remote_code))
        elif Path(name).expanduser().exists():
            check_model_dir(Path(name).expanduser(), cfg.model.trust_remote_code)
    resolve_model(cfg.model)


def _accelerate_config_path(name: str) -> str:
    path = _path_or_shipped(name, name)
    if path is None:
        raise UserError(f"accelerate config not found: {name} (accelerate_config)")
    return str(path)


