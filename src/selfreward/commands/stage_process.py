"""One stage of a run directory in a process of its own, started by `pipeline.execute` when the run sets
`stage_processes: true`:

    python -m selfreward.commands.stage_process RUN_DIR NAME ITERATION

The parent holds the run directory's lock and has validated everything; this process runs the stage through the
same `pipeline.execute`, which marks it done and records its peak memory, and ends, taking what the stage loaded
with it. Errors are the CLI's one line and exit status 2; the parent then says which stage failed.
"""

from __future__ import annotations

import sys

from selfreward.cli import report_error


def main(argv: list[str]) -> int:
    from selfreward import pipeline
    from selfreward.rundir import RunDir, Stage

    root, name, iteration = argv
    rd = RunDir(root)
    pipeline.execute(rd, rd.load_config(), Stage(name, int(iteration)))
    return 0


if __name__ == "__main__":
    raise SystemExit(report_error(main, sys.argv[1:]))
