"""Stage judge: k rubric judgments of every candidate; raw texts are kept so parsing can be re-run."""

from __future__ import annotations

import statistics
from collections import Counter

from selfreward.backends import Sampling
from selfreward.config import RunConfig
from selfreward.judge import aggregate, load_template, parse_score, render
from selfreward.records import read_jsonl, write_jsonl
from selfreward.rundir import RunDir
from selfreward.stages import model_for, open_generator


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    c = cfg.judge
    template = load_template(c.template)
    candidates = read_jsonl(rd.artifact(t, "candidates.jsonl"))
    judge_path = model_for(cfg, rd, t, c.model)
    requests = [[{"role": "user", "content": render(template, x["prompt"], x["response"])}] for x in candidates]
    gen = open_generator(cfg, judge_path)
    try:
        outs = gen.generate(requests, Sampling(c.k, c.temperature, c.top_p, c.max_new_tokens, cfg.seed + 2000 * t),
                            desc=f"judge {t}")
    finally:
        gen.close()
    rows = [judgment(x, raws) for x, raws in zip(candidates, outs)]
    write_jsonl(rd.artifact(t, "judgments.jsonl"), rows)
    return summarize(rows)


def judgment(candidate: dict, raws: list[str]) -> dict:
    scores = [parse_score(r) for r in raws]
    mean, spread = aggregate(scores)
    return {"candidate_id": candidate["id"], "prompt_id": candidate["prompt_id"], "raw": raws,
            "scores": scores, "score": mean, "spread": spread}


def summarize(rows: list[dict]) -> dict:
    parsed = [s for r in rows for s in r["scores"]]
    valid = [s for s in parsed if s is not None]
    means = [r["score"] for r in rows if r["score"] is not None]
    return {
        "judgments": len(parsed),
        "parse_failures": len(parsed) - len(valid),
        "parse_failure_rate": round((len(parsed) - len(valid)) / len(parsed), 4) if parsed else 0.0,
        "unscored_candidates": sum(r["score"] is None for r in rows),
        "mean_score": round(statistics.fmean(means), 3) if means else None,
        "score_histogram": {str(k): v for k, v in sorted(Counter(round(s) for s in valid).items())},
    }
