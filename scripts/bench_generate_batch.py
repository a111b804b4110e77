"""The library's decoder (HFGenerator) against transformers' own continuous batching (`model.generate_batch`,
paged attention) on the same prompts: the first N builtin IFEval prompts, greedy, the same model and dtype.

    .venv/bin/python scripts/bench_generate_batch.py --prompts 64 --max-new-tokens 128 --batch-size 32

Each side is warmed up with a 2-prompt call first. Prints wall time, generated tokens (HFGenerator's re-tokenised
from its texts; generate_batch's as returned) and how many greedy texts are identical. Figures in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from selfreward.backends import Sampling
    from selfreward.backends.chat import encode_chat
    from selfreward.backends.hf import HFGenerator
    from selfreward.config import ModelConfig
    from selfreward.evals.ifeval import load_ifeval
    from selfreward.models import resolve_dtype, resolve_model

    path, dtype = resolve_model(ModelConfig()), resolve_dtype("auto")
    requests = [[{"role": "user", "content": row["prompt"]}] for row in load_ifeval()[:a.prompts]]
    out = {"prompts": len(requests), "max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size,
           "dtype": str(dtype), "threads": torch.get_num_threads()}

    gen = HFGenerator(path, dtype=dtype, batch_size=a.batch_size)
    gen.generate(requests[:2], Sampling(1, 0.0, 1.0, 4), "warm-up")
    start = time.perf_counter()
    ours = [c[0] for c in gen.generate(requests, Sampling(1, 0.0, 1.0, a.max_new_tokens), "HFGenerator")]
    out["hfgenerator_s"] = round(time.perf_counter() - start, 2)
    tok = gen.tokenizer
    out["hfgenerator_tokens"] = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in ours)
    del gen

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    ids = [encode_chat(tok, r) for r in requests]

    def config(tokens: int) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id)  # load_tokenizer sets one

    model.generate_batch(ids[:2], generation_config=config(4))
    start = time.perf_counter()
    results = model.generate_batch(ids, generation_config=config(a.max_new_tokens))
    out["generate_batch_s"] = round(time.perf_counter() - start, 2)
    ordered = sorted(results.values(), key=lambda r: int(str(r.request_id).rsplit("_", 1)[-1]))
    theirs = [tok.decode(r.generated_tokens, skip_special_tokens=True) for r in ordered]
    out["generate_batch_tokens"] = sum(len(r.generated_tokens) for r in ordered)
    out["identical_greedy_texts"] = sum(x.strip() == y.strip() for x, y in zip(ours, theirs))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
