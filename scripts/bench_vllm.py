"""Start-up time and tokens/s of a generation backend on one fixed workload: the first --prompts builtin IFT
prompts (seeded subset), --n completions each, up to --max-new-tokens, as the sample stage asks for them.

    .venv-vllm/bin/python scripts/bench_vllm.py --backend vllm --out vllm.json
    .venv-vllm/bin/python scripts/bench_vllm.py --backend transformers --batch-size 64

New tokens are counted by re-tokenising the returned texts (the end-of-turn token is not counted). vLLM starts
its engine in another process, so this script, like any that uses the vLLM backend, runs under a __main__ guard.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="transformers only: sequences per forward pass")
    ap.add_argument("--out", help="also write the result as JSON here")
    args = ap.parse_args()

    from selfreward.backends import Sampling, make_generator
    from selfreward.config import ModelConfig
    from selfreward.data import load_ift
    from selfreward.models import default_model_dir, load_tokenizer, resolve_dtype

    path = str(default_model_dir(ModelConfig()))
    requests = [[{"role": "user", "content": r["prompt"]}] for r in load_ift("builtin", args.prompts, seed=0)]
    start = time.perf_counter()
    gen = make_generator(args.backend, path, dtype=resolve_dtype(args.dtype), batch_size=args.batch_size)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    outs = gen.generate(requests, Sampling(args.n, 0.7, 0.9, args.max_new_tokens, seed=0), desc="bench")
    seconds = time.perf_counter() - start
    gen.close()
    tok = load_tokenizer(path)
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for o in outs for t in o)
    result = {"backend": args.backend, "dtype": args.dtype, "prompts": args.prompts, "n": args.n,
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size if args.backend != "vllm" else None,
              "startup_s": round(startup, 1), "generate_s": round(seconds, 1), "new_tokens": tokens,
              "tokens_per_s": round(tokens / seconds, 1), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
              "load_avg_after": os.getloadavg()}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
