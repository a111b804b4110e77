"""Stage judge: M_t scores every candidate with the rubric (sample or expected mode, see `scoring`); the raw
judge texts are kept so parsing can be re-run."""

from __future__ import annotations

import math
import statistics
from collections import Counter

from selfreward.config import RunConfig
from selfreward.judge import load_template
from selfreward.records import read_jsonl, write_jsonl
from selfreward.rundir import RunDir
from selfreward.scoring import score_items
from selfreward.stages import judge_view, model_for, open_generator


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    c = cfg.judge
    template = load_template(c.template)
    candidates = read_jsonl(rd.artifact(t, "candidates.jsonl"))
    judge_path = model_for(cfg, rd, t, c.model)
    gen = open_generator(judge_view(cfg), judge_path)
    try:
        scored = score_items(gen, template, [(x["prompt"], x["response"]) for x in candidates], c,
                             cfg.seed + 2000 * t, desc=f"judge {t}")
    finally:
        gen.close()
    rows = [{"candidate_id": x["id"], "prompt_id": x["prompt_id"], **s} for x, s in zip(candidates, scored)]
    write_jsonl(rd.artifact(t, "judgments.jsonl"), rows)
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    """In expected mode a "parse failure" is a judgment whose digits got too little probability."""
    expected = bool(rows) and rows[0]["mode"] == "expected"
    parsed = [r["score"] for r in rows] if expected else [s for r in rows for s in r["scores"]]
    valid = [s for s in parsed if s is not None]
    means = [r["score"] for r in rows if r["score"] is not None]
    return {
        "judge_mode": rows[0]["mode"] if rows else None,
        "judgments": len(parsed),
        "parse_failures": len(parsed) - len(valid),
        "parse_failure_rate": round((len(parsed) - len(valid)) / len(parsed), 4) if parsed else 0.0,
        "unscored_candidates": sum(r["score"] is None for r in rows),
        "mean_score": round(statistics.fmean(means), 3) if means else None,
        # half up, as judge_metrics counts them: round() would send 0.5, 2.5 and 4.5 down to an even digit
        "score_histogram": {str(k): v for k, v in sorted(Counter(math.floor(s + 0.5) for s in means).items())},
    }
