"""Helpers for the bad-state tests: a small run directory made without any model, snapshots, one-line errors."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from selfreward import pipeline
from selfreward.config import load_config
from selfreward.rundir import RunDir, Stage, previous, stage_config
from selfreward.stages import BY_NAME

SETTINGS = ["iterations=1", "judge_eval.max_prompts=0", "eval.suites=[]", "eval.compare_prompts=0"]


def fake_model(path: Path) -> Path:
    """A directory that passes models.check_model_dir (it only looks at file names): never loaded here."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (path / name).write_text("{}")
    return path


def make_run(root: Path, *overrides: str, done: int = 2) -> tuple[RunDir, object]:
    """A run directory as `selfreward run` leaves it (config.yaml with its sha256 in manifest.json), its first
    `done` stages marked done with made-up stats; model.name is a fake model directory beside it."""
    model = fake_model(root.parent / f"{root.name}-model")
    cfg = load_config(None, [*SETTINGS, f"model.name={model}", *overrides])
    rd = RunDir(root)
    pipeline.prepare(rd, cfg, ["selfreward", "run", "(test)"])
    for stage in pipeline.run_plan(cfg)[:done]:
        stats = {"examples": 3, "dropped_too_long": 0, "steps": 1, "train_loss": 1.5, "wall_seconds": 2.0} \
            if stage.name == "sft" else {"prompts_kept": 2, "prompts_generated": 5, "wall_seconds": 1.0}
        rd.mark_done(stage, stage_config(cfg, BY_NAME[stage.name].deps), previous(stage), stats)
    return rd, cfg


SFT, GEN1 = Stage("sft", 0), Stage("gen-prompts", 1)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its size and modification time: equal snapshots = nothing written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.is_dir())
    return out


def one_line_error(capsys) -> str:
    """The command's stderr, which must be exactly one 'selfreward: error:' line, without the prefix."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("selfreward: error: "), err
    return lines[0].removeprefix("selfreward: error: ")


@contextmanager
def read_only(path: Path):
    """`path` made read-only for real: by permissions for an ordinary user; as root (whom permissions do not
    stop), by a read-only bind mount, skipping the test where mounting is not allowed."""
    if os.geteuid() != 0:
        modes = {}
        for p in [path, *path.rglob("*")]:
            modes[p] = p.stat().st_mode
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(path)], capture_output=True)
        ok = False
    if not ok:
        pytest.skip("running as root and cannot mount a read-only bind mount here")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)
