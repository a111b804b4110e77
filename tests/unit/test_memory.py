"""Per-stage memory: the kernel's counters (selfreward.memory), what pipeline.execute records of each stage in
manifest.json, and the summary's memory table; none of it enters the done-markers, whose stats must not differ
between two runs of the same work."""

from __future__ import annotations

import json
import sys

import pytest

import fake_pipeline
from selfreward import memory, pipeline
from selfreward.rundir import RunDir, Stage
from selfreward.summary import memory_rows, summary

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


@linux
def test_peak_follows_an_allocation_and_resets():
    memory.reset_peak()
    base = memory.peak_rss_mb()
    assert isinstance(base, int) and abs(base - memory.rss_mb()) <= 2
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
    assert memory.peak_rss_mb() >= base + 60
    del block
    memory.release()
    memory.reset_peak()
    assert memory.peak_rss_mb() < base + 30


def test_each_stage_records_its_memory_in_the_manifest_not_in_its_marker(tmp_path, monkeypatch, capsys):
    fake_pipeline.patch(monkeypatch)
    root = tmp_path / "run"
    fake_pipeline.run(root)
    rd = RunDir(root)
    cfg = fake_pipeline.config(root)
    plan = pipeline.run_plan(cfg)
    stages = json.loads((root / "manifest.json").read_text())["stages"]
    assert list(stages) == [memory.stage_key(s.name, s.iteration) for s in plan]
    for usage in stages.values():
        assert set(usage) == {"peak_rss_mb", "rss_before_mb", "rss_after_mb", "time"}
        if sys.platform.startswith("linux"):
            assert usage["peak_rss_mb"] >= max(usage["rss_before_mb"], usage["rss_after_mb"]) - 1
    # the results stay free of it: the marker's stats are what the stage returned, and its wall time
    for stage in plan:
        assert "peak_rss_mb" not in rd.marker(stage)["stats"]
    # the stage's return value has it, for the log line and for callers such as bench
    stats = pipeline.execute(rd, cfg, Stage("pairs", 1))
    assert "peak_rss_mb" in stats and "peak_rss_mb" not in rd.marker(Stage("pairs", 1))["stats"]
    assert "peak_rss_mb=" in capsys.readouterr().out  # run_all's "[done] ..." lines


def test_summary_shows_each_stage_memory(tmp_path, monkeypatch):
    fake_pipeline.patch(monkeypatch)
    root = tmp_path / "run"
    fake_pipeline.run(root)
    rd = RunDir(root)
    text, data = summary(rd, 2)
    assert [r["stage"] for r in data["memory"]][:3] == ["sft:0", "eval-judge:0", "eval-judge:1"]
    assert all(set(r) == {"stage", "peak_rss_mb", "rss_before_mb", "rss_after_mb"} for r in data["memory"])
    table = text.split("Memory per stage")[1].splitlines()
    assert table[1].split() == ["stage", "peak", "before", "after"] and table[2].split()[0] == "sft:0"


def test_a_run_without_memory_records_or_with_a_damaged_manifest_still_summarises(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    assert memory_rows(rd) == []
    (rd.root / "manifest.json").write_text("{not json")
    assert memory_rows(rd) == []
    (rd.root / "manifest.json").write_text(json.dumps({"invocations": [], "stages": ["odd"]}))
    assert memory_rows(rd) == []
    assert "Memory per stage" not in summary(rd, 1)[0]
