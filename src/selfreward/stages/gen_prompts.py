"""Stage gen-prompts: M_t writes new instructions few-shot from the IFT prompts; filters keep the novel ones."""

from __future__ import annotations

import math
import random
from collections import Counter

from selfreward.backends import Sampling
from selfreward.data import load_ift
from selfreward.errors import UserError
from selfreward.prompts import PromptFilter, clean, draw_examples, example_pool, few_shot_request, request_lines
from selfreward.records import write_jsonl
from selfreward.stages.spec import Context, StageSpec


def run(ctx: Context) -> dict:
    rd, cfg, t = ctx.rd, ctx.cfg, ctx.t
    c = cfg.gen_prompts
    seeds = [r["prompt"] for r in load_ift(cfg.data.ift, cfg.data.max_ift, cfg.seed)]
    filt = PromptFilter(c.min_words, c.max_words, c.rouge_l_max, c.banned_words)
    for s in seeds + request_lines():  # echoing the request back is not a new task
        filt.add_reference(s)
    pool = example_pool(seeds)
    rng = random.Random(f"{cfg.seed}-{t}")
    held_back = cfg.eval.compare_prompts if t == 1 else 0  # the evals' head-to-head prompts, never trained on
    target = c.num_prompts + held_back
    kept, rejected, reasons = [], [], Counter()
    gen = ctx.generator(ctx.model_for(c.model))
    try:
        for round_ in range(c.max_rounds):
            missing = target - len(kept)
            if missing <= 0:
                break
            # Ask for more than is missing: on a small model most drafts fail a filter.
            asks = [[{"role": "user", "content": few_shot_request(draw_examples(pool, c.shots, rng))}]
                    for _ in range(math.ceil(missing * 1.5) + 2)]
            outs = gen.generate(asks, Sampling(1, c.temperature, c.top_p, c.max_new_tokens, cfg.seed + round_),
                                desc=f"gen-prompts {t} (round {round_ + 1})")
            for (raw,) in outs:
                text = clean(raw)
                why = filt.reason(text) if len(kept) < target else "over target"
                if why is None:
                    kept.append(text)
                else:
                    reasons[why] += 1
                    rejected.append({"raw": raw, "reason": why})
    finally:
        gen.close()
    write_jsonl(rd.artifact(t, "prompts.rejected.jsonl"), rejected)
    if not kept:
        raise UserError(f"iteration {t}: no generated prompt passed the filters ({dict(reasons)}); "
                        f"see {rd.artifact(t, 'prompts.rejected.jsonl')}")
    # Short of the target, training keeps at least half of what passed.
    split = len(kept) - min(held_back, len(kept) // 2)
    train, held = kept[:split], kept[split:]
    write_jsonl(rd.artifact(t, "prompts.jsonl"), ({"id": i, "prompt": p} for i, p in enumerate(train)))
    if held_back:
        write_jsonl(rd.artifact(t, "prompts.heldout.jsonl"), ({"id": i, "prompt": p} for i, p in enumerate(held)))
    return {"prompts_kept": len(train), "prompts_held_back": len(held), "prompts_generated": len(kept) + len(rejected),
            "rejected": dict(reasons)}


STAGE = StageSpec("gen-prompts", run, deps=("model.dtype", "model.trust_remote_code", "model.chat_template", "data.ift",
                                            "data.max_ift", "gen_prompts", "eval.compare_prompts", "seed"),
                  reads=("{policy}",), writes=("iter{t}/prompts.jsonl", "iter{t}/prompts.rejected.jsonl"),
                  command=True, summary="M_t (or a fixed writer) writes new instructions")
