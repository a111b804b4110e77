"""The process's resident memory, as the kernel counts it (Linux /proc; None elsewhere), and handing freed memory
back to the system. Standard library only: the pipeline and the unit tests import it without torch.

    rss_mb()        resident set size now, in whole MiB
    reset_peak()    start a new high-water mark (writing 5 to /proc/self/clear_refs resets VmHWM to VmRSS)
    peak_rss_mb()   the high-water mark since the last reset_peak() (or since the process started)
    release()       collect garbage and return the allocator's free memory to the system (glibc's malloc_trim)

A stage's peak (pipeline.execute) is the high-water mark between reset_peak() before it and peak_rss_mb() after.
After a training stage, glibc keeps the freed heap memory of the model, the gradients and the optimizer state
(many mid-sized blocks, freed in an order that leaves the heap top in use) unless malloc_trim gives it back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from pathlib import Path

_STATUS = Path("/proc/self/status")


def stage_key(name: str, iteration: int) -> str:
    """How manifest.json's "stages" (pipeline.record_usage) names a stage: "sft:0", "judge:2", "eval-judge:1"."""
    return f"{name}:{iteration}"


def _status_mb(field: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024)
    return None


def rss_mb() -> int | None:
    return _status_mb("VmRSS")


def peak_rss_mb() -> int | None:
    return _status_mb("VmHWM")


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def release() -> None:
    gc.collect()
    c = libc()
    if c is not None:
        with contextlib.suppress(AttributeError, OSError):
            c.malloc_trim(0)


_LIBC: list = []


def libc():
    """The C library through ctypes, or None where it cannot be loaded."""
    if not _LIBC:
        name = ctypes.util.find_library("c")
        try:
            _LIBC.append(ctypes.CDLL(name) if name else None)
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]
