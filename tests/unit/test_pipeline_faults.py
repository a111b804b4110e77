"""The pipeline under injected faults (selfreward.faults), over torch-free fake stages (fake_pipeline.py): a
process SIGKILLed at a named point, a full disk, a stage that fails on its input. Every case resumes to exactly
the files an uninterrupted run writes. Nothing here waits on the clock."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fake_pipeline
from run_helpers import snapshot
from selfreward import faults, pipeline
from selfreward.errors import UserError
from selfreward.rundir import RunDir, Stage

HERE = Path(__file__).parent
VOLATILE = {"token", "after", "wall_seconds"}  # differ between any two runs


def contents(root: Path) -> dict[str, object]:
    """Every file of a run but the lock and the manifest (its invocations), JSON parsed, volatile keys dropped."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir() or rel in (".lock", "manifest.json"):
            continue
        if p.suffix == ".json":
            out[rel] = {k: v for k, v in json.loads(p.read_text()).items() if k not in VOLATILE}
        elif p.suffix == ".jsonl":
            out[rel] = [json.loads(line) for line in p.read_text().splitlines()]
        else:
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[dict, list[str]]:
    """An uninterrupted fake run in a child process: (its contents, every fault point it passed, in order)."""
    root = tmp_path_factory.mktemp("clean") / "run"
    log = root.parent / "points.log"
    child(root, {faults.LOG: str(log)})
    return contents(root), log.read_text().split()


def child(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean_env = {k: v for k, v in os.environ.items() if k not in (faults.KILL_AT, faults.FAIL_AT, faults.LOG)}
    return subprocess.run([sys.executable, str(HERE / "fake_pipeline.py"), str(root)], env={**clean_env, **env},
                          capture_output=True, text=True, cwd=HERE)


def test_the_points_cover_every_kind_and_stage(clean):
    _, points = clean
    assert [p for p in points if p.count(":") == 0] == []  # each named by a scope that starts again on resume
    kinds = {p.split(":")[0].split("@")[0] for p in points}
    assert kinds == {"stage-start", "stage-end", "jsonl", "json", "batch"}
    stages = {p.split(":")[1] for p in points if p.startswith("stage-start:")}
    assert stages == {"sft", "gen-prompts", "sample", "judge", "pairs", "dpo", "eval-judge", "eval", "compare"}
    assert "batch:sample:2@3" in points and "jsonl:eval-judge:0@1" in points


# One run killed again and again, each time at a later point, then resumed: each point is reached after the
# resume because the stage it lies in is redone from its start.
KILLS = ["json:prepare@1",  # the manifest, in prepare
         "jsonl:sft:0@1",  # mid-write of sft's rows
         "json:sft:0@2",  # the stage's memory record, before its marker (regression: it came after the marker and
         # outside the stage's scope, so a kill there lost the record of a stage that counted as done, and its point,
         # counted per process, was never reached again by a resumed run: the campaign's later kills were lost)
         "json:sft:0@3",  # between the tmp and the rename of its marker
         "stage-start:eval-judge:1", "batch:sample:1@2", "stage-end:judge:1", "json:pairs:1@1", "json:pairs:1@2",
         "jsonl:eval:2@1", "stage-start:compare:3"]


def test_sigkill_at_point_after_point_then_resume_gives_the_uninterrupted_run(clean, tmp_path, capsys, monkeypatch):
    expected, points = clean
    assert [p for p in KILLS if p not in points and p + "@1" not in points] == []
    root = tmp_path / "run"
    for point in KILLS:
        proc = child(root, {faults.KILL_AT: point})
        assert proc.returncode == -9, (point, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        # a killed run directory is a valid one: status reads it (no lock needed), and writes nothing
        before = snapshot(root)
        from selfreward.cli import main

        if (root / "config.yaml").exists():
            assert main(["status", str(root)]) == 0, capsys.readouterr().err
        assert snapshot(root) == before
    fake_pipeline.patch(monkeypatch)
    fake_pipeline.run(root)
    assert contents(root) == expected
    assert [p for p in root.rglob("*.tmp")] == []


@pytest.mark.parametrize("point", ["jsonl:judge:2@1", "json:sample:1@3", "json:compare:3@1"])
def test_disk_full_mid_stage_fails_in_one_line_keeps_earlier_results_and_resumes(clean, tmp_path, point, capsys,
                                                                                   monkeypatch):
    """ENOSPC during a stage's write: one line (exit 2 from the CLI), the earlier artifacts intact, no temporary
    file left, and the next run completes to the uninterrupted result."""
    expected, _ = clean
    fake_pipeline.patch(monkeypatch)
    root = tmp_path / "run"
    monkeypatch.setenv(faults.FAIL_AT, point)
    with pytest.raises(UserError) as e:
        fake_pipeline.run(root)
    msg = str(e.value)
    assert msg.startswith("could not write ") and "No space left on device" in msg and "\n" not in msg
    assert [p for p in root.rglob("*.tmp")] == []
    failed = point.split(":")[1] + ":" + point.split(":")[2].split("@")[0]
    name, t = failed.split(":")
    rd = RunDir(root)
    assert rd.marker(Stage(name, int(t))) is None
    done = [s for s in pipeline.run_plan(fake_pipeline.config(root))
            if (rd.marker(s) is not None)]
    for stage in done:  # every finished stage's output is the uninterrupted run's
        rel = str(fake_pipeline.output(rd, stage).relative_to(root))
        assert contents(root)[rel] == expected[rel]
    monkeypatch.delenv(faults.FAIL_AT)
    fake_pipeline.run(root)
    assert contents(root) == expected


def failing_stage(write_first: bool):
    from selfreward import records
    from selfreward.stages import StageSpec

    def run(ctx):
        if write_first:
            records.write_jsonl(ctx.rd.artifact(ctx.t, "pairs.jsonl"), [{"half": True}])
        raise UserError("judgments.jsonl row 3: missing field 'score'")

    return StageSpec("pairs", run, deps=fake_pipeline.FAKES["pairs"].deps)


@pytest.mark.parametrize("write_first", [False, True])
def test_a_stage_that_fails_keeps_its_old_marker_only_if_it_wrote_nothing(tmp_path, write_first, monkeypatch):
    """Regression: pairs deleted its old done-marker before reading a judgments row without a score. The marker
    now goes right before the stage's first write: a stage failing on its input leaves the old result valid."""
    fake_pipeline.patch(monkeypatch)
    root = tmp_path / "run"
    fake_pipeline.run(root)
    rd = RunDir(root)
    pairs = Stage("pairs", 1)
    old = rd.marker(pairs)
    monkeypatch.setitem(pipeline.BY_NAME, "pairs", failing_stage(write_first))
    with pytest.raises(UserError, match="missing field 'score'"):
        pipeline.execute(rd, fake_pipeline.config(root), pairs)
    if write_first:
        assert rd.marker(pairs) is None  # its output changed: the old marker is gone, pairs is redone next time
        assert pipeline.state(rd, fake_pipeline.config(root), pairs) == "todo"
    else:
        assert rd.marker(pairs) == old
        assert pipeline.state(rd, fake_pipeline.config(root), pairs) == "done"


def test_fault_points_in_process(monkeypatch, tmp_path):
    log = tmp_path / "log"
    monkeypatch.setenv(faults.LOG, str(log))
    monkeypatch.setenv(faults.FAIL_AT, "x:a:1@2")
    with faults.scope("a:1"):
        faults.point("x")
        with pytest.raises(OSError) as e:
            faults.point("x")
        assert e.value.errno == 28
    faults.point("x")  # outside the scope: another point
    with faults.scope("a:1"):  # counted from 1 again: a stage redone in the same process
        faults.point("x")
    assert log.read_text().split() == ["x:a:1@1", "x:a:1@2", "x@1", "x:a:1@1"]


def test_fault_points_cost_nothing_unset(monkeypatch):
    for name in (faults.KILL_AT, faults.FAIL_AT, faults.LOG):
        monkeypatch.delenv(name, raising=False)
    assert not faults.active()
    faults.point("batch")  # no error, no count
    assert faults._counts["batch"] == 0
