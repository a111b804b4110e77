"""A torch-free stand-in for every stage, to test the pipeline's resume rules with real kills in milliseconds.

Each fake stage reads the artifact of the stage before it (rundir.previous), and writes rows that depend on that
artifact's bytes, the config keys it declares and the seed: a stage that read a half-written input, or ran with
the wrong settings, gives different bytes, and comparing against an uninterrupted run shows it. The fake sample
stage passes the "batch" fault point as hf's batching loop does.

In a test: `patch(monkeypatch)`. As a process (the tests kill it): `python fake_pipeline.py RUN_DIR [key=value ...]`
runs (or resumes) the whole plan, like `selfreward run --run-dir RUN_DIR`.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from selfreward import faults, pipeline, records
from selfreward.config import load_config
from selfreward.rundir import RunDir, Stage, previous, stage_config
from selfreward.stages import BY_NAME, StageSpec

# Small, but with every kind of stage: the loop, eval-judge of M0..M3, eval of M1..M3, compare of M2 and M3.
SETTINGS = ["iterations=2", "judge_eval.max_prompts=2", "eval.suites=[ifeval]", "eval.compare_prompts=2"]
ROWS = 6


def output(rd: RunDir, stage: Stage) -> Path:
    if stage.name in ("eval-judge", "eval", "compare"):
        return rd.eval_dir / f"{stage.name}-M{stage.iteration}.jsonl"
    return rd.artifact(stage.iteration, f"{stage.name}.jsonl")


def _fake(name: str) -> StageSpec:
    real = BY_NAME[name]

    def run(ctx) -> dict:
        stage = Stage(name, ctx.t)
        prev = previous(stage)
        source = output(ctx.rd, prev).read_bytes() if prev is not None else b"base"
        digest = hashlib.sha256(source).hexdigest()[:12]
        settings = repr(sorted(stage_config(ctx.cfg, real.deps).items()))
        if name == "sample":
            for _ in range(3):
                faults.point("batch")
        rows = [{"stage": name, "t": ctx.t, "i": i, "input": digest,
                 "value": hashlib.sha256(f"{settings}|{digest}|{i}".encode()).hexdigest()[:8]} for i in range(ROWS)]
        records.write_jsonl(output(ctx.rd, stage), rows)
        records.write_json(output(ctx.rd, stage).with_suffix(".json"), {"rows": len(rows), "input": digest})
        return {"rows": len(rows)}

    return StageSpec(name, run, deps=real.deps, command=real.command, training=False, summary=real.summary)


FAKES = {name: _fake(name) for name in BY_NAME}


def patch(monkeypatch) -> None:
    for name, spec in FAKES.items():
        monkeypatch.setitem(pipeline.BY_NAME, name, spec)


def config(run_dir: Path, *extra: str):
    rd = RunDir(run_dir)
    if rd.config_path.exists():
        return rd.load_config(list(extra))
    return load_config(None, SETTINGS + list(extra))


def run(run_dir: Path, *extra: str) -> None:
    """What `selfreward run --run-dir RUN` does, over the fakes (the caller has patched them in)."""
    rd = RunDir(run_dir)
    cfg = config(run_dir, *extra)
    with rd.lock("the fake run"):
        pipeline.check_changes(rd, cfg, redo=False)
        pipeline.prepare(rd, cfg, ["fake_pipeline", str(run_dir)])
        pipeline.run_all(rd, cfg)


def main(argv: list[str]) -> int:
    pipeline.BY_NAME.update(FAKES)
    run(Path(argv[0]), *argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
