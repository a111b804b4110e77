"""Sequences the stages and skips the finished ones; every stage's work lives in its own module."""

from __future__ import annotations

import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml

from selfreward.config import RunConfig, from_dict
from selfreward.errors import UserError
from selfreward.records import write_json
from selfreward.rundir import RunDir, Stage, plan, previous, require_done

MODULES = {"sft": "sft", "gen-prompts": "gen_prompts", "sample": "sample", "judge": "judge", "pairs": "pairs",
           "dpo": "dpo", "eval-judge": "eval_judge", "eval": "evaluate", "compare": "compare"}
TRAINING = {"sft", "dpo"}
_LAUNCHED = "SELFREWARD_UNDER_ACCELERATE"


def run_plan(cfg: RunConfig) -> list[Stage]:
    e = cfg.eval
    return plan(cfg.iterations, judge_eval=cfg.judge_eval.max_prompts != 0,
                evals=bool(e.suites) or e.compare_prompts > 0, compare=e.compare_prompts > 0)


def execute(rd: RunDir, cfg: RunConfig, stage: Stage) -> dict:
    """Run one stage now (even if it finished before) and mark it done; returns its stats."""
    prev = previous(stage)
    if prev is not None:
        require_done(rd, prev)
    rd.clear(stage)
    start = time.time()
    if stage.name in TRAINING and cfg.accelerate_config and not os.environ.get(_LAUNCHED):
        _launch_accelerate(rd, cfg, stage)  # the launched processes run this function and write the marker
        return rd.marker(stage)["stats"]
    stats = importlib.import_module(f"selfreward.stages.{MODULES[stage.name]}").run(rd, cfg, stage.iteration)
    stats["wall_seconds"] = round(time.time() - start, 1)
    if stage.name not in TRAINING or _is_main_process():
        rd.mark_done(stage, cfg, prev, stats)
    return stats


def check_changes(rd: RunDir, cfg: RunConfig, redo: bool) -> None:
    """Refuse a changed setting that a finished stage depends on, before anything is touched."""
    for stage in run_plan(cfg):
        state = rd.state(stage, cfg, previous(stage))
        if state.startswith("changed") and not redo:
            raise UserError(f"{stage} already finished with other settings ({state[len('changed: '):]}); "
                            "add --redo to recompute it and every stage after it, or use another --run-dir")


def run_all(rd: RunDir, cfg: RunConfig) -> None:
    """Run every stage that is not done, in order; `check_changes` must have passed."""
    for stage in run_plan(cfg):
        state = rd.state(stage, cfg, previous(stage))
        if state == "done":
            print(f"[skip] {stage}: done", flush=True)
        else:
            print(f"[run ] {stage}" + (f" ({state})" if state != "todo" else ""), flush=True)
            stats = execute(rd, cfg, stage)
            print(f"[done] {stage} in {stats.get('wall_seconds', 0):.0f}s: {_brief(stats)}", flush=True)


def prepare(rd: RunDir, cfg: RunConfig, argv: list[str]) -> None:
    """Write the resolved config and append this invocation to the manifest."""
    rd.root.mkdir(parents=True, exist_ok=True)
    tmp = rd.config_path.with_name("config.yaml.tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    os.replace(tmp, rd.config_path)
    path = rd.root / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"created": _now(), "invocations": []}
    manifest["versions"] = {p: _version(p) for p in ("selfreward", "torch", "transformers", "trl", "peft",
                                                       "accelerate", "datasets")}
    manifest["python"] = platform.python_version()
    manifest["invocations"].append({"time": _now(), "argv": argv})
    write_json(path, manifest)


def load_run_config(rd: RunDir) -> RunConfig:
    if not rd.config_path.is_file():
        raise UserError(f"{rd.root} is not a run directory (no config.yaml); start one with selfreward run")
    return from_dict(yaml.safe_load(rd.config_path.read_text()) or {}, str(rd.config_path))


def _launch_accelerate(rd: RunDir, cfg: RunConfig, stage: Stage) -> None:
    # Through the interpreter running us, so it works without an activated virtualenv on PATH.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", cfg.accelerate_config,
           "-m", "selfreward", stage.name, str(rd.root)]
    cmd += [] if stage.name == "sft" else ["--iteration", str(stage.iteration)]
    print("[launch] " + shlex.join(cmd), flush=True)
    if subprocess.run(cmd, env={**os.environ, _LAUNCHED: "1"}).returncode != 0 or rd.marker(stage) is None:
        raise UserError(f"{stage} failed under accelerate launch (see the output above)")


def _is_main_process() -> bool:
    from selfreward.stages.training import is_main_process

    return is_main_process()


def _brief(stats: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, dict) and k != "wall_seconds")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def argv() -> list[str]:
    return [Path(sys.argv[0]).name] + sys.argv[1:]
