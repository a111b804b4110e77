"""Stage sample: N responses per prompt from M_t."""

from __future__ import annotations

import statistics

from selfreward.backends import Sampling
from selfreward.config import RunConfig
from selfreward.records import read_jsonl, write_jsonl
from selfreward.rundir import RunDir
from selfreward.stages import open_generator


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    c = cfg.sample
    prompts = read_jsonl(rd.artifact(t, "prompts.jsonl"))
    gen = open_generator(cfg, str(rd.policy(t)))
    try:
        outs = gen.generate([[{"role": "user", "content": p["prompt"]}] for p in prompts],
                            Sampling(c.n, c.temperature, c.top_p, c.max_new_tokens, cfg.seed + 1000 * t),
                            desc=f"sample {t}")
    finally:
        gen.close()
    candidates = [
        {"id": p["id"] * c.n + j, "prompt_id": p["id"], "prompt": p["prompt"], "response": text}
        for p, texts in zip(prompts, outs) for j, text in enumerate(texts)
    ]
    write_jsonl(rd.artifact(t, "candidates.jsonl"), candidates)
    lengths = [len(x["response"]) for x in candidates]
    return {"candidates": len(candidates), "empty_responses": sum(n == 0 for n in lengths),
            "mean_response_chars": round(statistics.fmean(lengths), 1) if lengths else 0.0}
