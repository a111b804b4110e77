"""One benchmark configuration, run in a process of its own so that its peak memory is its own.

    python -m selfreward.bench_worker SPEC.json     (written by selfreward.bench; the result goes to spec["result"])

The stages call the library's own code (HFGenerator, score_items, build_pairs, the DPO stage's trainer); the
configurations differ only in the arguments they pass.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from selfreward.backends import Sampling
from selfreward.backends.hf import HFGenerator
from selfreward.config import JudgeConfig, load_config
from selfreward.judge import load_template
from selfreward.models import resolve_dtype
from selfreward.pairs import build_pairs
from selfreward.records import read_jsonl, write_json, write_jsonl
from selfreward.scoring import requests_for, score_items

TEMPERATURE, TOP_P = 0.7, 0.9  # the paper's sampling, for answers and judgments alike


@contextlib.contextmanager
def measured(record: dict):
    """Wall time and peak resident memory of the block (the kernel's high-water mark is reset on entry)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    yield record
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["peak_rss_mb"] = round(peak_rss_mb())


def peak_rss_mb() -> float:
    with contextlib.suppress(OSError, StopIteration):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # since the process started


def rates(record: dict, generated: int, processed: int) -> dict:
    """processed = every sequence's prompt plus its output, the work a one-at-a-time run does in full."""
    wall = record["wall_s"]
    return {**record, "generated_tokens": generated, "processed_tokens": processed,
            "generated_tok_s": round(generated / wall, 1), "processed_tok_s": round(processed / wall, 1)}


def count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def sample_stage(gen: HFGenerator, prompts: list[str], s: dict) -> tuple[dict, list[dict]]:
    requests = [[{"role": "user", "content": p}] for p in prompts]
    with measured({}) as m:
        outs = gen.generate(requests, Sampling(s["n"], TEMPERATURE, TOP_P, s["max_new_tokens"], seed=1000), "sample")
    prompt_tokens = [len(gen._encode(r)) for r in requests]
    generated = [[count(gen.tokenizer, t) for t in texts] for texts in outs]
    candidates = [{"id": i * s["n"] + j, "prompt_id": i, "prompt": p, "response": t}
                  for i, (p, texts) in enumerate(zip(prompts, outs)) for j, t in enumerate(texts)]
    return rates(m, sum(map(sum, generated)), sum(len(g) * p + sum(g) for p, g in zip(prompt_tokens, generated))), \
        candidates


def judge_stage(gen: HFGenerator, candidates: list[dict], s: dict) -> tuple[dict, list[dict]]:
    template = load_template("builtin")
    items = [(c["prompt"], c["response"]) for c in candidates]
    c = JudgeConfig(mode="sample", k=s["k"], temperature=TEMPERATURE, top_p=TOP_P,
                    max_new_tokens=s["judge_max_new_tokens"])
    with measured({}) as m:
        rows = score_items(gen, template, items, c, seed=2000, desc="judge")
    prompt_tokens = [len(gen._encode(r)) for r in requests_for(template, items)]
    generated = [[count(gen.tokenizer, raw) for raw in row["raw"]] for row in rows]
    record = rates(m, sum(map(sum, generated)), sum(len(g) * p + sum(g) for p, g in zip(prompt_tokens, generated)))
    failures = sum(s is None for row in rows for s in row["scores"])
    return {**record, "parse_failures": failures}, rows


def expected_judgments(gen: HFGenerator, candidates: list[dict], s: dict) -> dict:
    """Greedy judgments and their expected scores (judge.mode=expected) of the same answers: deterministic, so two
    configurations differ here by dtype and batching alone, not by sampling."""
    c = JudgeConfig(mode="expected", max_new_tokens=s["judge_max_new_tokens"])
    rows = score_items(gen, load_template("builtin"), [(x["prompt"], x["response"]) for x in candidates], c, seed=0,
                       desc="judge (expected)")
    return {"raw": [r["raw"][0] for r in rows], "score": [r["score"] for r in rows]}


@torch.inference_mode()
def response_logprobs(gen: HFGenerator, candidates: list[dict]) -> list[list[float]]:
    """Each response token's log-probability given its prompt, one unpadded sequence at a time (the dtype's drift)."""
    out = []
    for c in candidates:
        prompt = gen._encode([{"role": "user", "content": c["prompt"]}])
        response = gen.tokenizer(c["response"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + response], device=gen.model.device)
        logits = gen.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        out.append(torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt):, None])[:, 0].tolist())
    return out


def training_pairs(candidates: list[dict], rows: list[dict]) -> list[dict]:
    """The judged pair of each prompt; where the judge gave none (a tie, unparseable judgments), the prompt's first
    and last answer, for timing only, so that DPO's workload is one pair per prompt whatever the judge said."""
    scores = [{"candidate_id": c["id"], "score": r["score"]} for c, r in zip(candidates, rows)]
    judged, _ = build_pairs(candidates, scores)
    have = {p["prompt_id"] for p in judged}
    by_prompt = defaultdict(list)
    for c in candidates:
        by_prompt[c["prompt_id"]].append(c)
    filler = [{"prompt_id": pid, "prompt": cs[0]["prompt"], "chosen": cs[0]["response"], "rejected": cs[-1]["response"],
               "judged": False} for pid, cs in by_prompt.items() if pid not in have]
    return [{**p, "judged": True} for p in judged] + filler


def dpo_stage(spec: dict, pairs: list[dict]) -> dict:
    from selfreward.stages.dpo import build_trainer, preference_rows
    from selfreward.stages.training import token_length, training_tokenizer

    s = spec["settings"]
    cfg = load_config(None, [f"model.name={spec['model']}", "dpo.epochs=1", f"dpo.batch_size={s['dpo_batch_size']}",
                             f"dpo.max_length={s['dpo_max_length']}", f"dpo.mixed_precision={spec['mixed_precision']}",
                             f"dpo.precompute_ref_log_probs={str(spec['precompute_ref_log_probs']).lower()}"])
    tokenizer = training_tokenizer(spec["model"], cfg)
    rows = [r for r in preference_rows(pairs)
            if max(token_length(tokenizer, r["prompt"] + r[k]) for k in ("chosen", "rejected")) <= cfg.dpo.max_length]
    tokens = sum(token_length(tokenizer, r["prompt"] + r[k]) for r in rows for k in ("chosen", "rejected"))
    with measured({}) as m:
        trainer = build_trainer(cfg, spec["model"], Path(spec["work"]) / "dpo-trainer", rows)
        setup = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - setup
    steps = result.global_step
    return {**m, "pairs": len(rows), "judged_pairs": sum(p["judged"] for p in pairs), "steps": steps,
            "tokens": tokens, "setup_s": round(m["wall_s"] - train_s, 2), "train_s": round(train_s, 2),
            "s_per_step": round(train_s / max(steps, 1), 2), "tok_s": round(tokens / m["wall_s"], 1),
            "train_loss": round(result.training_loss, 4)}


def warm_up(gen: HFGenerator) -> None:
    """One-time kernel set-up, kept out of the first stage's time."""
    gen.generate([[{"role": "user", "content": "Hi"}]], Sampling(1, 0.0, 1.0, 2), "warm-up")


def iteration(spec: dict) -> dict:
    s, work = spec["settings"], Path(spec["work"])
    gen = HFGenerator(spec["model"], dtype=resolve_dtype(spec["dtype"]), batch_size=spec["batch_size"],
                      reuse_prefix=spec["reuse_prefix"])
    dtype = str(gen.model.dtype).removeprefix("torch.")
    try:
        warm_up(gen)
        sample, candidates = sample_stage(gen, spec["prompts"], s)
        write_jsonl(work / "candidates.jsonl", candidates)
        to_judge = read_jsonl(Path(spec["judge_candidates"])) if spec.get("judge_candidates") else candidates
        judge, rows = judge_stage(gen, to_judge, s)
        write_jsonl(work / "judgments.jsonl", rows)
        logprobs = response_logprobs(gen, to_judge[:s["drift_candidates"]])
        expected = expected_judgments(gen, to_judge[:s["drift_candidates"]], s)
    finally:
        gen.close()
    pairs = read_jsonl(Path(spec["dpo_pairs"])) if spec.get("dpo_pairs") else training_pairs(to_judge, rows)
    write_jsonl(work / "pairs.jsonl", pairs)
    dpo = dpo_stage(spec, pairs)
    return {"stages": {"sample": sample, "judge": judge, "dpo": dpo}, "judge_scores": [r["score"] for r in rows],
            "response_logprobs": logprobs, "expected_judgments": expected, "dtype": dtype,
            "torch_threads": torch.get_num_threads()}


def ceiling(spec: dict) -> dict:
    """The model's generation rate on this machine: one prompt repeated over the whole batch, every row running to
    exactly max_new_tokens, with the sample stage's sampling; the best over the batch sizes tried."""
    s = spec["settings"]
    gen = HFGenerator(spec["model"], dtype=resolve_dtype(spec["dtype"]), batch_size=max(s["ceiling_batches"]))
    try:
        warm_up(gen)
        ids = gen._encode([{"role": "user", "content": spec["prompts"][0]}])
        by_batch = {}
        for rows in s["ceiling_batches"]:
            input_ids = torch.tensor([ids] * rows, device=gen.model.device)
            with measured({}) as m, torch.inference_mode():
                gen.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                   temperature=TEMPERATURE, top_p=TOP_P, top_k=None, max_new_tokens=s["max_new_tokens"],
                                   min_new_tokens=s["max_new_tokens"], pad_token_id=gen.tokenizer.pad_token_id)
            by_batch[rows] = {**m, "tok_s": round(rows * s["max_new_tokens"] / m["wall_s"], 1)}
    finally:
        gen.close()
    best = max(by_batch, key=lambda b: by_batch[b]["tok_s"])
    return {"prompt_tokens": len(ids), "by_batch": by_batch, "best_batch": best, "tok_s": by_batch[best]["tok_s"]}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.manual_seed(0)
    result = ceiling(spec) if spec["kind"] == "ceiling" else iteration(spec)
    write_json(Path(spec["result"]), result)


if __name__ == "__main__":
    main(sys.argv[1])
