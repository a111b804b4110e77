"""`stage_processes: true`: each stage runs in a process of its own (pipeline.execute starts
`python -m selfreward.commands.stage_process`), which marks it done and records its memory; a failure there is the
child's one line and then the parent's, naming the stage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from integration_helpers import load_cfg
from selfreward import pipeline
from selfreward.errors import UserError
from selfreward.rundir import RunDir, Stage
from selfreward.summary import summary


@pytest.fixture
def launches(monkeypatch) -> list[list[str]]:
    """The commands pipeline starts, run for real."""
    seen: list[list[str]] = []
    real = subprocess.run  # pipeline.subprocess is the subprocess module itself

    def spy(cmd, **kwargs):
        seen.append(cmd)
        return real(cmd, **kwargs)

    monkeypatch.setattr(pipeline.subprocess, "run", spy)
    return seen


def _prepared(tmp_path: Path, model_dir: Path, *extra: str):
    rd = RunDir(tmp_path / "run")
    cfg = load_cfg(model_dir, "data.max_ift=6", "data.max_eft=6", "sft.batch_size=2", *extra, "stage_processes=true")
    pipeline.prepare(rd, cfg, ["test"])
    return rd, cfg


def test_stages_run_in_their_own_processes(tmp_path, tiny_model_dir, launches):
    rd, cfg = _prepared(tmp_path, tiny_model_dir)
    for stage in (Stage("sft", 0), Stage("gen-prompts", 1)):
        stats = pipeline.execute(rd, cfg, stage)
        marker = rd.marker(stage)
        assert marker is not None and marker["stats"] == {k: v for k, v in stats.items() if k != "peak_rss_mb"}
        usage = json.loads((rd.root / "manifest.json").read_text())["stages"][f"{stage.name}:{stage.iteration}"]
        assert stats["peak_rss_mb"] == usage["peak_rss_mb"] > 0 and usage["launcher_rss_mb"] > 0
    assert [c[2:] for c in launches] == [["selfreward.commands.stage_process", str(rd.root), "sft", "0"],
                                         ["selfreward.commands.stage_process", str(rd.root), "gen-prompts", "1"]]
    assert (rd.policy(1) / "model.safetensors").is_file()
    assert rd.artifact(1, "prompts.jsonl").is_file()
    assert pipeline.state(rd, cfg, Stage("gen-prompts", 1)) == "done"
    table = summary(rd, cfg.iterations)[0].split("Memory per stage")[1].splitlines()
    assert "launcher: the run's own process" in table[0]
    assert table[1].split() == ["stage", "peak", "before", "after", "launcher"]


def test_a_failing_stage_is_the_childs_line_then_the_parents(tmp_path, tiny_model_dir, launches, capfd):
    rd, cfg = _prepared(tmp_path, tiny_model_dir, "iterations=1")
    for name in ("sft", "gen-prompts", "sample", "judge"):  # recorded as done without running: only pairs runs
        stage = Stage(name, 0 if name == "sft" else 1)
        rd.mark_done(stage, {}, pipeline.previous(stage, False), {})
    rd.artifact(1, "candidates.jsonl").parent.mkdir(parents=True, exist_ok=True)
    rd.artifact(1, "candidates.jsonl").write_text('{"prompt_id": 0, "text": \n')
    with pytest.raises(UserError, match=r"^pairs \(iteration 1\) failed in its own process"):
        pipeline.execute(rd, cfg, Stage("pairs", 1))
    err = capfd.readouterr().err
    child = [line for line in err.splitlines() if line.startswith("selfreward: error:")]
    assert len(child) == 1 and "candidates.jsonl" in child[0] and "Traceback" not in err
    assert rd.marker(Stage("pairs", 1)) is None
    assert len(launches) == 1


def test_a_stage_process_killed_by_a_signal_is_named(tmp_path, tiny_model_dir, launches, monkeypatch):
    rd, cfg = _prepared(tmp_path, tiny_model_dir, "iterations=1")
    for name in ("sft", "gen-prompts", "sample", "judge"):
        stage = Stage(name, 0 if name == "sft" else 1)
        rd.mark_done(stage, {}, pipeline.previous(stage, False), {})
    monkeypatch.setenv("SELFREWARD_KILL_AT", "stage-start:pairs:1")  # the child SIGKILLs itself (selfreward.faults)
    with pytest.raises(UserError, match=r"^pairs \(iteration 1\), in its own process \(stage_processes\), was killed "
                                        r"by SIGKILL \(the system may have run out of memory\); re-run"):
        pipeline.execute(rd, cfg, Stage("pairs", 1))
    assert rd.marker(Stage("pairs", 1)) is None


def test_a_callers_own_opener_keeps_the_stage_in_process(tmp_path, tiny_model_dir, launches):
    from selfreward.backends import open_generator

    rd, cfg = _prepared(tmp_path, tiny_model_dir)
    pipeline.execute(rd, cfg, Stage("sft", 0), opener=lambda *a, **k: open_generator(*a, **k))
    assert launches == [] and (rd.policy(1) / "model.safetensors").is_file()
