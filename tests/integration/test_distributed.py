"""Training stages run unchanged under a launcher: `accelerate launch` (what `accelerate_config` does) and two
data-parallel processes with torchrun (DDP over gloo on the CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from integration_helpers import load_cfg
from selfreward import pipeline
from selfreward.rundir import RunDir, Stage

CPU_ACCELERATE = """compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
num_machines: 1
num_processes: 1
machine_rank: 0
mixed_precision: 'no'
use_cpu: true
"""


def _prepared_run(tmp_path: Path, model_dir: Path, *extra: str) -> tuple[RunDir, object]:
    rd = RunDir(tmp_path / "run")
    cfg = load_cfg(model_dir, "data.max_ift=6", "data.max_eft=6", "sft.batch_size=2", *extra)
    pipeline.prepare(rd, cfg, ["test"])
    return rd, cfg


def test_sft_through_accelerate_launch(tmp_path, tiny_model_dir):
    config = tmp_path / "cpu.yaml"
    config.write_text(CPU_ACCELERATE)
    rd, cfg = _prepared_run(tmp_path, tiny_model_dir, f"accelerate_config={config}")
    stats = pipeline.execute(rd, cfg, Stage("sft", 0))  # launches `accelerate launch ... -m selfreward sft`
    marker = rd.marker(Stage("sft", 0))
    # the launched process's peak memory is recorded beside the marker (manifest), not in the stats it wrote
    assert marker is not None and marker["stats"] == {k: v for k, v in stats.items() if k != "peak_rss_mb"}
    assert stats["steps"] == math.ceil(stats["examples"] / 2)
    assert (rd.policy(1) / "model.safetensors").is_file()
    assert not (rd.stage_dir(0) / "model.tmp").exists()


def test_sft_with_two_ddp_processes(tmp_path, tiny_model_dir):
    rd, cfg = _prepared_run(tmp_path, tiny_model_dir)
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "selfreward", "sft", str(rd.root)],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads((rd.stage_dir(0) / "sft.done.json").read_text())["stats"]
    # each optimizer step sees 2 examples per process: half the steps of one process
    assert stats["steps"] == math.ceil(stats["examples"] / (2 * 2))
    assert (rd.policy(1) / "model.safetensors").is_file()
