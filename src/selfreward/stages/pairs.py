"""Stage pairs: highest vs lowest judged candidate per prompt."""

from __future__ import annotations

import statistics

from selfreward.config import RunConfig
from selfreward.pairs import build_pairs
from selfreward.records import read_jsonl, write_jsonl
from selfreward.rundir import RunDir


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    pairs, dropped = build_pairs(read_jsonl(rd.artifact(t, "candidates.jsonl")),
                                 read_jsonl(rd.artifact(t, "judgments.jsonl")))
    write_jsonl(rd.artifact(t, "pairs.jsonl"), pairs)

    def mean_len(key: str) -> float | None:
        return round(statistics.fmean(len(p[key]) for p in pairs), 1) if pairs else None

    return {"pairs": len(pairs), "dropped": dict(dropped),
            "mean_chosen_chars": mean_len("chosen"), "mean_rejected_chars": mean_len("rejected")}
