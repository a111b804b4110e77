"""Deterministic fault injection: a process SIGKILLs itself (or fails to write) at a named point.

Tests and scripts/kill_campaign.py use it to stop a run at an exact place, whatever the machine's speed. Nothing
happens unless one of these environment variables is set:

    SELFREWARD_KILL_AT=POINT    SIGKILL this process when it reaches POINT
    SELFREWARD_FAIL_AT=POINT    raise OSError(ENOSPC, "No space left on device") there instead (a full disk)
    SELFREWARD_FAULT_LOG=FILE   append every point reached to FILE, one per line (the campaign's menu of points)

A point is NAME:SCOPE@N: the N-th time this process reached NAME inside SCOPE (the stage being executed, as
STAGE:T, e.g. sample:1, eval-judge:0; counted from 1 each time the stage starts). "@N" may be left out for the
first time. The points:

    stage-start:sample:1       pipeline.execute, before the stage runs
    batch:sample:1@3           the 3rd generation batch (backends.hf, each batch of _longest_first)
    jsonl:sample:1@1           records.write_jsonl, after half of the rows went into the temporary file
    json:sample:1@1            records.write_json (done-markers too), between the temporary file and the rename
    model-save:dpo:1           stages.training.save_final, between the saved temporary directory and the rename
    stage-end:sample:1         pipeline.execute, after the stage returned and before its done-marker is written
    json:sample:1@2            the stage's memory, recorded in manifest.json just before its done-marker (@3)
    json:prepare@1             `run`: the resolved config and this invocation in manifest.json, before any stage
    json:report@1              `run`: summary.json, then results.json (@2), after the last stage

Every point is named by a scope that starts again on resume (a stage, prepare, report), so a point of a killed run
is reached again, at the same count, by the process that resumes it.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections import Counter
from contextlib import contextmanager

KILL_AT = "SELFREWARD_KILL_AT"
FAIL_AT = "SELFREWARD_FAIL_AT"
LOG = "SELFREWARD_FAULT_LOG"

_scopes: list[str] = []
_counts: Counter = Counter()


def active() -> bool:
    """Whether any fault variable is set (callers may then do extra work to offer a point, e.g. count rows)."""
    return bool(os.environ.get(KILL_AT) or os.environ.get(FAIL_AT) or os.environ.get(LOG))


@contextmanager
def scope(name: str):
    """Points reached inside are named NAME:`name` and counted from 1 again."""
    for label in [k for k in _counts if k.endswith(":" + name)]:
        del _counts[label]
    _scopes.append(name)
    try:
        yield
    finally:
        _scopes.pop()


def point(name: str) -> None:
    """A named place where a fault may be injected (see the module docstring). Costs nothing when none is set."""
    if not active():
        return
    label = f"{name}:{_scopes[-1]}" if _scopes else name
    _counts[label] += 1
    n = _counts[label]
    full = f"{label}@{n}"
    log = os.environ.get(LOG)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(full + "\n")
    if _matches(os.environ.get(KILL_AT), label, n):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.kill(os.getpid(), signal.SIGKILL)
    if _matches(os.environ.get(FAIL_AT), label, n):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (injected at {full})")


def _matches(spec: str | None, label: str, n: int) -> bool:
    if not spec:
        return False
    spec = spec.strip()
    return spec == f"{label}@{n}" or (spec == label and n == 1)
