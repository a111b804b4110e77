"""Sequences the stages and skips the finished ones; every stage's work lives in its own module."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from selfreward import faults, memory, records
from selfreward.backends import open_generator
from selfreward.config import RunConfig
from selfreward.errors import UserError
from selfreward.records import read_json, write_json
from selfreward.rundir import LAUNCHED, RunDir, Stage, plan, previous, require_done, stage_config
from selfreward.stages import BY_NAME, Context

_LAUNCHED = LAUNCHED


def run_plan(cfg: RunConfig) -> list[Stage]:
    e = cfg.eval
    return plan(cfg.iterations, judge_eval=cfg.judge_eval.max_prompts != 0,
                evals=bool(e.suites) or e.compare_prompts > 0, compare=e.compare_prompts > 0, meta=cfg.meta.enabled)


def state(rd: RunDir, cfg: RunConfig, stage: Stage) -> str:
    """rd.state under the stage's declared dependencies."""
    deps = BY_NAME[stage.name].deps
    return rd.state(stage, stage_config(cfg, deps), previous(stage, cfg.meta.enabled),
                    stage_config(RunConfig(), deps))


def execute(rd: RunDir, cfg: RunConfig, stage: Stage, opener=open_generator) -> dict:
    """Run one stage now (even if it finished before) and mark it done; returns its stats. `opener` opens the
    stage's generators (selfreward.backends.open_generator unless a caller such as bench brings its own).

    The old done-marker is removed only right before the stage writes its first artifact (records.on_first_write;
    the model save calls it too): a stage that fails on its input first, e.g. on damaged judgments, leaves its
    earlier result done and valid."""
    spec = BY_NAME[stage.name]
    prev = previous(stage, cfg.meta.enabled)
    if prev is not None:
        require_done(rd, prev)
    old = rd.marker(stage)  # a damaged marker fails here, before anything runs
    start = time.time()
    accelerate = bool(spec.training and cfg.accelerate_config)
    # A caller's own opener (bench, tests) cannot cross into another process: those stages stay in this one.
    if (accelerate or cfg.stage_processes and opener is open_generator) and not os.environ.get(_LAUNCHED):
        return _launch(rd, stage, old["token"] if old else None, cfg.accelerate_config if accelerate else None)
    before = memory.rss_mb()
    memory.reset_peak()
    with faults.scope(f"{stage.name}:{stage.iteration}"):
        with records.on_first_write(lambda: rd.clear(stage)):
            faults.point("stage-start")
            stats = spec.run(Context(rd, cfg, stage.iteration, stage.name, opener))
            stats["wall_seconds"] = round(time.time() - start, 1)
            faults.point("stage-end")
        usage = {"peak_rss_mb": memory.peak_rss_mb(), "rss_before_mb": before}
        memory.release()  # what the stage loaded goes back to the system, not only to the allocator
        usage["rss_after_mb"] = memory.rss_mb()
        if not spec.training or _is_main_process():
            # the memory record before the marker: a run killed between the two redoes the stage and records it
            # again, where the other order would lose the record of a stage that counts as done
            record_usage(rd, stage, usage)
            rd.mark_done(stage, stage_config(cfg, spec.deps), prev, stats)
    return {**stats, "peak_rss_mb": usage["peak_rss_mb"]}


def record_usage(rd: RunDir, stage: Stage, usage: dict) -> None:
    """The stage's memory (MiB: peak resident memory while it ran, resident memory before it and after it),
    kept in manifest.json under "stages" (the summary shows the peaks). Not in the done-marker, whose stats are
    the stage's results: memory differs from run to run, a result must not. Never fails a stage."""
    path = rd.root / "manifest.json"
    try:
        manifest = _read_manifest(path)
        manifest.setdefault("stages", {})[usage_key(stage)] = {**usage, "time": _now()}
        write_json(path, manifest)
    except (OSError, UserError):
        pass


def usage_key(stage: Stage) -> str:
    return memory.stage_key(stage.name, stage.iteration)


def recorded_usage(rd: RunDir) -> dict[str, dict]:
    """manifest.json's "stages": usage_key(stage) -> the memory record_usage kept of its last run ({} if none)."""
    try:
        stages = _read_manifest(rd.root / "manifest.json").get("stages", {})
    except (OSError, UserError):
        return {}
    return stages if isinstance(stages, dict) else {}


def check_changes(rd: RunDir, cfg: RunConfig, redo: bool) -> None:
    """Refuse a changed setting that a finished stage depends on, before anything is touched."""
    for stage in run_plan(cfg):
        now = state(rd, cfg, stage)
        if now.startswith("changed") and not redo:
            raise UserError(f"{stage} already finished with other settings ({now[len('changed: '):]}); "
                            "add --redo to recompute it and every stage after it, or use another --run-dir")


def run_all(rd: RunDir, cfg: RunConfig) -> None:
    """Run every stage that is not done, in order; `check_changes` must have passed."""
    for stage in run_plan(cfg):
        now = state(rd, cfg, stage)
        if now == "done":
            print(f"[skip] {stage}: done", flush=True)
        else:
            print(f"[run ] {stage}" + (f" ({now})" if now != "todo" else ""), flush=True)
            stats = execute(rd, cfg, stage)
            print(f"[done] {stage} in {stats.get('wall_seconds', 0):.0f}s: {_brief(stats)}", flush=True)


def prepare(rd: RunDir, cfg: RunConfig, argv: list[str]) -> None:
    """Write the resolved config and append this invocation to the manifest (with config.yaml's sha256, by which
    a later load tells the file selfreward wrote from one cut short). Everything is validated before: nothing
    here may fail on input."""
    path = rd.root / "manifest.json"
    manifest = _read_manifest(path)
    rd.root.mkdir(parents=True, exist_ok=True)
    manifest["config_sha256"] = rd.write_config(cfg)
    manifest["versions"] = {p: _version(p) for p in ("selfreward", "torch", "transformers", "trl", "peft",
                                                       "accelerate", "datasets")}
    manifest["python"] = platform.python_version()
    manifest["invocations"].append({"time": _now(), "argv": argv})
    with faults.scope("prepare"):
        write_json(path, manifest)


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        return {"created": _now(), "invocations": []}
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("invocations", []), list):
        raise UserError(f"{path}: damaged (expected an object with a list of invocations); fix or delete it")
    manifest.setdefault("invocations", [])
    return manifest


def load_run_config(rd: RunDir, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The run's config.yaml (checked: see RunDir.config_mapping), with overrides."""
    return rd.load_config(overrides)


def _launch(rd: RunDir, stage: Stage, old_token: str | None, accelerate_config: str | None) -> dict:
    """Run the stage in a child process, which marks it done and records its memory (the launched process runs
    `execute` itself): under `accelerate launch` with that config, else as one plain process (stage_processes).
    Returns what `execute` returns: the stage's stats and its peak."""
    # Through the interpreter running us, so it works without an activated virtualenv on PATH.
    if accelerate_config:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
               "-m", "selfreward", stage.name, str(rd.root)]
        cmd += [] if stage.name == "sft" else ["--iteration", str(stage.iteration)]
        print("[launch] " + shlex.join(cmd), flush=True)
    else:
        cmd = [sys.executable, "-m", "selfreward.commands.stage_process", str(rd.root), stage.name,
               str(stage.iteration)]
    rc = subprocess.run(cmd, env={**os.environ, _LAUNCHED: "1"}, preexec_fn=_ends_with_parent()).returncode
    marker = rd.marker(stage)
    if rc != 0 or marker is None or marker["token"] == old_token:  # the old marker stays until the stage writes
        how = "under accelerate launch" if accelerate_config else "in its own process (stage_processes)"
        if rc < 0:  # no line of its own: a signal ended it
            oom = " (the system may have run out of memory)" if -rc == signal.SIGKILL else ""
            name = signal.Signals(-rc).name if -rc in signal.valid_signals() else f"signal {-rc}"
            raise UserError(f"{stage}, {how}, was killed by {name}{oom}; re-run the same command to resume")
        raise UserError(f"{stage} failed {how} (see the output above)")
    usage = recorded_usage(rd).get(usage_key(stage))
    if usage is not None:  # the machine held both processes: the stage's peak plus this one
        record_usage(rd, stage, {**{k: v for k, v in usage.items() if k != "time"}, "launcher_rss_mb": memory.rss_mb()})
    return {**marker["stats"], "peak_rss_mb": (usage or {}).get("peak_rss_mb")}


def _ends_with_parent():
    """What the child runs before it starts (subprocess's preexec_fn): asks for a SIGTERM when this process dies
    (Linux), so that a killed run leaves no stage writing on without the lock it held. The C library is looked up
    here, not in the forked child, where finding it may start a process of its own."""
    libc = memory.libc() if sys.platform.startswith("linux") else None

    def ask() -> None:
        with contextlib.suppress(AttributeError, OSError):
            if libc is not None:
                libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return ask


def _is_main_process() -> bool:
    from selfreward.stages.training import is_main_process

    return is_main_process()


def _brief(stats: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items() if not isinstance(v, dict) and k != "wall_seconds")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def argv() -> list[str]:
    return [Path(sys.argv[0]).name] + sys.argv[1:]
