"""Stage sample: N responses per prompt from M_t; each records whether the model ended it ("finished") or
max_new_tokens cut it off."""

from __future__ import annotations

import statistics

from selfreward.backends import Sampling
from selfreward.records import read_jsonl, write_jsonl
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    c, t = ctx.cfg.sample, ctx.t
    prompts = read_jsonl(ctx.rd.artifact(t, "prompts.jsonl"))
    gen = ctx.generator(str(ctx.rd.policy(t)))
    try:
        outs = gen.complete([[{"role": "user", "content": p["prompt"]}] for p in prompts],
                            Sampling(c.n, c.temperature, c.top_p, c.max_new_tokens, ctx.cfg.seed + 1000 * t),
                            desc=f"sample {t}")
    finally:
        gen.close()
    candidates = [
        {"id": p["id"] * c.n + j, "prompt_id": p["id"], "prompt": p["prompt"], "response": out.text,
         "finished": out.finished}
        for p, row in zip(prompts, outs) for j, out in enumerate(row)
    ]
    write_jsonl(ctx.rd.artifact(t, "candidates.jsonl"), candidates)
    lengths = [len(x["response"]) for x in candidates]
    return {"candidates": len(candidates), "empty_responses": sum(n == 0 for n in lengths),
            "cut_off": sum(not x["finished"] for x in candidates),
            "mean_response_chars": round(statistics.fmean(lengths), 1) if lengths else 0.0}


STAGE = StageSpec("sample", run, deps=("model.dtype", "model.trust_remote_code", "model.chat_template", "sample",
                                       "seed"),
                  reads=("iter{t}/prompts.jsonl", "{policy}"), writes=("iter{t}/candidates.jsonl",), command=True,
                  summary="N answers per prompt from M_t")
