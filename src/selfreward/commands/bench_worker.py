"""One benchmark configuration, run in a process of its own so that its peak memory is its own.

    python -m selfreward.commands.bench_worker SPEC.json     (written by selfreward bench; the result goes to
                                                               spec["result"])

An iteration runs the real stages (selfreward.stages: sample, judge, pairs, dpo) through `pipeline.execute` on a
small run directory in the worker's work dir:

    run/config.yaml              the RunConfig built here from the configuration's overrides
    run/sft/model                a link to the model under test, so that M1 (rd.policy(1)) is it
    run/iter1/prompts.jsonl      the benchmark's prompts (gen-prompts is marked done: the bench wrote them)
    run/iter1/...                what the stages write: candidates, judgments, pairs, model, the done-markers

The configurations differ only in their config overrides (dtype, generation batch size, DPO mixed precision and
reference precomputation) and in the opener the stages get their generator from, which builds HFGenerator with
the configuration's reuse_prefix. For equal work, the naive configuration's judge reads the fast one's answers
and its DPO trains on the fast one's pairs: after its own sample (pairs) stage, that stage's output is kept as
candidates.own.jsonl (pairs.judged.jsonl) and the fast one's file takes its place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from selfreward import pipeline
from selfreward.backends import GENERATE, Sampling, require
from selfreward.backends.chat import encode_chat
from selfreward.backends.hf import HFGenerator
from selfreward.config import RunConfig, load_config
from selfreward.judges import templates
from selfreward.judges.rubric import requests_for
from selfreward.judges.scorers import score_items
from selfreward.models import load_tokenizer, resolve_dtype
from selfreward.records import read_jsonl, write_json, write_jsonl
from selfreward.rundir import RunDir, Stage, previous, stage_config
from selfreward.stages import BY_NAME

TEMPERATURE, TOP_P = 0.7, 0.9  # the paper's sampling, for answers and judgments alike
RUN = "run"  # the run directory, inside the worker's work dir


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


# the run directory ---------------------------------------------------------------------------------------------


def overrides(spec: dict) -> list[str]:
    """The configuration as RunConfig overrides: the stages read everything from the config."""
    s = spec["settings"]
    return [f"model.name={spec['model']}", f"model.dtype={spec['dtype']}", "generation.backend=transformers",
            f"generation.batch_size={spec['batch_size']}", "iterations=1", "seed=0",  # sample seed 1000, judge 2000
            f"sample.n={s['n']}", f"sample.temperature={TEMPERATURE}", f"sample.top_p={TOP_P}",
            f"sample.max_new_tokens={s['max_new_tokens']}",
            "judge.mode=sample", f"judge.k={s['k']}", f"judge.temperature={TEMPERATURE}", f"judge.top_p={TOP_P}",
            f"judge.max_new_tokens={s['judge_max_new_tokens']}",
            "dpo.epochs=1", f"dpo.batch_size={s['dpo_batch_size']}", f"dpo.max_length={s['dpo_max_length']}",
            f"dpo.mixed_precision={spec['mixed_precision']}",
            f"dpo.precompute_ref_log_probs={str(spec['precompute_ref_log_probs']).lower()}"]


def local_model_dir(model: str) -> Path:
    if Path(model).is_dir():
        return Path(model).resolve()
    from huggingface_hub import snapshot_download  # a hub id that resolve_model found in the local cache

    return Path(snapshot_download(model, local_files_only=True))


def prepare_run(work: Path, spec: dict) -> tuple[RunDir, RunConfig]:
    """config.yaml, sft/model (the model under test, linked) and iter1/prompts.jsonl; sft and gen-prompts are
    marked done (the bench stands in for them), so that sample's `require_done` finds its input."""
    rd = RunDir(work / RUN)
    if rd.root.exists():
        shutil.rmtree(rd.root)
    cfg = load_config(None, overrides(spec))
    pipeline.prepare(rd, cfg, ["selfreward-bench-worker", str(work / "spec.json")])
    rd.policy(1).parent.mkdir(parents=True)
    rd.policy(1).symlink_to(local_model_dir(spec["model"]), target_is_directory=True)
    write_jsonl(rd.artifact(1, "prompts.jsonl"), [{"id": i, "prompt": p} for i, p in enumerate(spec["prompts"])])
    for stage, stats in ((Stage("sft", 0), {"bench": "the model under test, linked"}),
                         (Stage("gen-prompts", 1), {"bench": f"{len(spec['prompts'])} prompts written by bench"})):
        rd.mark_done(stage, stage_config(cfg, BY_NAME[stage.name].deps), previous(stage), stats)
    return rd, cfg


class Opener:
    """The stages' opener: HFGenerator with the configuration's dtype and batch size (from the config) and its
    reuse_prefix, warmed up once (a 2-token generation); the time that takes is recorded, so that the stage times
    leave model loading out as before."""

    def __init__(self, reuse_prefix: bool):
        self.reuse_prefix = reuse_prefix
        self.open_s: list[float] = []
        self.dtype: str | None = None

    def __call__(self, cfg: RunConfig, model_path: str, role: str = "policy",
                 needs: frozenset[str] = frozenset({GENERATE}), purpose: str = "this stage") -> HFGenerator:
        require("transformers", needs, purpose)
        start = time.perf_counter()
        gen = HFGenerator(model_path, dtype=resolve_dtype(cfg.model.dtype), batch_size=cfg.generation.batch_size,
                          trust_remote_code=cfg.model.trust_remote_code, reuse_prefix=self.reuse_prefix,
                          chat_template=cfg.model.chat_template)
        gen.generate([[{"role": "user", "content": "Hi"}]], Sampling(1, 0.0, 1.0, 2), "warm-up")
        self.open_s.append(time.perf_counter() - start)
        self.dtype = str(gen.model.dtype).removeprefix("torch.")
        return gen


def timed_stage(rd: RunDir, cfg: RunConfig, name: str, opener: Opener) -> dict:
    """pipeline.execute of the stage, measured; wall_s leaves out the opening of its generator (open_s)."""
    opener.open_s.clear()
    with measured({}) as m:
        stats = pipeline.execute(rd, cfg, Stage(name, 1), opener=opener)
    open_s = round(sum(opener.open_s), 2)
    return {**m, "wall_s": round(m["wall_s"] - open_s, 2), "open_s": open_s, "stats": stats}


def replace_artifact(rd: RunDir, name: str, source: Path, keep_as: str) -> None:
    """The stage's own `name` kept as `keep_as`, and `source` (the fast configuration's) in its place."""
    os.replace(rd.artifact(1, name), rd.artifact(1, keep_as))
    shutil.copyfile(source, rd.artifact(1, name))


# token counts and rates ----------------------------------------------------------------------------------------


def sample_rates(record: dict, tokenizer, candidates: list[dict]) -> dict:
    by_prompt = defaultdict(list)
    for c in candidates:
        by_prompt[c["prompt"]].append(count(tokenizer, c["response"]))
    generated = sum(map(sum, by_prompt.values()))
    processed = sum(len(g) * len(encode_chat(tokenizer, [{"role": "user", "content": p}])) + sum(g)
                    for p, g in by_prompt.items())
    return rates(record, generated, processed)


def judge_rates(record: dict, tokenizer, template: str, candidates: list[dict], rows: list[dict]) -> dict:
    requests = requests_for(template, [(c["prompt"], c["response"]) for c in candidates])
    generated = [[count(tokenizer, raw) for raw in row["raw"]] for row in rows]
    processed = sum(len(g) * len(encode_chat(tokenizer, r)) + sum(g) for r, g in zip(requests, generated))
    return rates(record, sum(map(sum, generated)), processed)


# pairs for DPO -------------------------------------------------------------------------------------------------


def timing_pairs(candidates: list[dict], judged: list[dict]) -> list[dict]:
    """The pairs stage's pairs; where it gave a prompt none (a tie, unparseable judgments), the prompt's first
    and last answer, for timing only, so that DPO's workload is one pair per prompt whatever the judge said."""
    have = {p["prompt_id"] for p in judged}
    by_prompt = defaultdict(list)
    for c in candidates:
        by_prompt[c["prompt_id"]].append(c)
    filler = [{"prompt_id": pid, "prompt": cs[0]["prompt"], "chosen": cs[0]["response"], "rejected": cs[-1]["response"],
               "judged": False} for pid, cs in by_prompt.items() if pid not in have]
    return [{**p, "judged": True} for p in judged] + filler


# DPO -----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def training_loop_times():
    """{"start", "end"}: when transformers' Trainer logged "***** Running training *****" and "Training
    completed" (logger transformers.trainer, INFO), the bounds of its training loop, the span its own train_runtime
    covers. The DPO stage reports no training time of its own; INFO records stay out of the console, warnings
    still reach it."""
    logger, parent = logging.getLogger("transformers.trainer"), logging.getLogger("transformers")
    times: dict[str, float] = {}

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if "***** Running training *****" in message:
                times.setdefault("start", record.created)
            elif "Training completed" in message:
                times["end"] = record.created
            if record.levelno >= logging.WARNING:
                parent.handle(record)

    listener = Listener(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(listener)
    try:
        yield times
    finally:
        logger.removeHandler(listener)
        logger.setLevel(level)
        logger.propagate = propagate


def dpo_rates(record: dict, rd: RunDir, cfg: RunConfig, pairs: list[dict], loop: dict) -> dict:
    from selfreward.stages.dpo import preference_rows
    from selfreward.stages.training import token_length, training_tokenizer

    tokenizer = training_tokenizer(str(rd.policy(1)), cfg)
    rows = [r for r in preference_rows(pairs)
            if max(token_length(tokenizer, r["prompt"] + r[k]) for k in ("chosen", "rejected")) <= cfg.dpo.max_length]
    tokens = sum(token_length(tokenizer, r["prompt"] + r[k]) for r in rows for k in ("chosen", "rejected"))
    stats, wall = record["stats"], record["wall_s"]
    steps = stats["steps"]
    train_s = round(loop["end"] - loop["start"], 2) if {"start", "end"} <= loop.keys() else None
    return {**record, "pairs": stats["pairs_used"], "judged_pairs": sum(p["judged"] for p in pairs), "steps": steps,
            "tokens": tokens, "train_s": train_s,
            # building the trainer (model loads, the reference pass where precomputed), length filter, saving M2
            "setup_and_save_s": None if train_s is None else round(wall - train_s, 2),
            "s_per_step": None if train_s is None else round(train_s / max(steps, 1), 2),
            "tok_s": round(tokens / wall, 1), "train_loss": stats["train_loss"]}


# bf16 vs fp32 --------------------------------------------------------------------------------------------------


def expected_judgments(gen: HFGenerator, cfg: RunConfig, candidates: list[dict]) -> dict:
    """Greedy judgments and their expected scores (judge.mode=expected) of the same answers: deterministic, so two
    configurations differ here by dtype and batching alone, not by sampling."""
    c = dataclasses.replace(cfg.judge, mode="expected")
    rows = score_items(gen, templates.load("rubric", c.template), [(x["prompt"], x["response"]) for x in candidates],
                       c, seed=0, desc="judge (expected)")
    return {"raw": [r["raw"][0] for r in rows], "score": [r["score"] for r in rows]}


@torch.inference_mode()
def response_logprobs(gen: HFGenerator, candidates: list[dict]) -> list[list[float]]:
    """Each response token's log-probability given its prompt, one unpadded sequence at a time (the dtype's drift);
    the prompt through the public chat encoder, the response as plain text (as HFGenerator.logprobs reads it)."""
    out = []
    for c in candidates:
        prompt = encode_chat(gen.tokenizer, [{"role": "user", "content": c["prompt"]}])
        response = gen.tokenizer(c["response"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = torch.tensor([prompt + response], device=gen.model.device)
        logits = gen.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        out.append(torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt):, None])[:, 0].tolist())
    return out


# the two kinds of run ------------------------------------------------------------------------------------------


def iteration(spec: dict) -> dict:
    s, work = spec["settings"], Path(spec["work"])
    rd, cfg = prepare_run(work, spec)
    opener = Opener(spec["reuse_prefix"])
    tokenizer = load_tokenizer(str(rd.policy(1)), cfg.model.trust_remote_code, chat_template=cfg.model.chat_template)
    stages = {}

    stages["sample"] = timed_stage(rd, cfg, "sample", opener)
    stages["sample"] = sample_rates(stages["sample"], tokenizer, read_jsonl(rd.artifact(1, "candidates.jsonl")))
    if spec.get("judge_candidates"):
        replace_artifact(rd, "candidates.jsonl", Path(spec["judge_candidates"]), "candidates.own.jsonl")
    candidates = read_jsonl(rd.artifact(1, "candidates.jsonl"))

    judge = timed_stage(rd, cfg, "judge", opener)
    rows = read_jsonl(rd.artifact(1, "judgments.jsonl"))
    stages["judge"] = {**judge_rates(judge, tokenizer, templates.load("rubric", cfg.judge.template), candidates, rows),
                       "parse_failures": judge["stats"]["parse_failures"]}

    stages["pairs"] = timed_stage(rd, cfg, "pairs", opener)
    if spec.get("dpo_pairs"):
        replace_artifact(rd, "pairs.jsonl", Path(spec["dpo_pairs"]), "pairs.judged.jsonl")
    else:
        os.replace(rd.artifact(1, "pairs.jsonl"), rd.artifact(1, "pairs.judged.jsonl"))
        write_jsonl(rd.artifact(1, "pairs.jsonl"),
                    timing_pairs(candidates, read_jsonl(rd.artifact(1, "pairs.judged.jsonl"))))
    pairs = read_jsonl(rd.artifact(1, "pairs.jsonl"))

    # untimed, on a generator of the configuration's own: the same answers under this configuration's dtype
    drift = candidates[:s["drift_candidates"]]
    gen = opener(cfg, str(rd.policy(1)), purpose="the bf16-vs-fp32 figures")
    try:
        logprobs = response_logprobs(gen, drift)
        expected = expected_judgments(gen, cfg, drift)
    finally:
        gen.close()

    with training_loop_times() as loop:
        dpo = timed_stage(rd, cfg, "dpo", opener)
    stages["dpo"] = dpo_rates(dpo, rd, cfg, pairs, loop)
    return {"stages": stages, "run_dir": str(rd.root), "judge_scores": [r["score"] for r in rows],
            "response_logprobs": logprobs, "expected_judgments": expected, "dtype": opener.dtype,
            "torch_threads": torch.get_num_threads()}


def ceiling(spec: dict) -> dict:
    """The model's generation rate on this machine: one prompt repeated over the whole batch, every row running to
    exactly max_new_tokens, each token the most likely one. Greedy, because it is the cheapest choice of a token:
    with the sample stage's top-p, generate() sorts the whole vocabulary at every step, and the library's sampler,
    which looks among the likeliest tokens first, outran that "ceiling" (112% of it). At each batch size one
    untimed warm-up generation of the very shapes measured, then `ceiling_repeats` timed ones: mean tokens/s and
    its spread. The ceiling is the best mean over the batch sizes tried."""
    s = spec["settings"]
    gen = HFGenerator(spec["model"], dtype=resolve_dtype(spec["dtype"]), batch_size=max(s["ceiling_batches"]))
    try:
        ids = encode_chat(gen.tokenizer, [{"role": "user", "content": spec["prompts"][0]}])

        @torch.inference_mode()
        def generate(rows: int) -> None:
            input_ids = torch.tensor([ids] * rows, device=gen.model.device)
            gen.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                               temperature=None, top_p=None, top_k=None, max_new_tokens=s["max_new_tokens"],
                               min_new_tokens=s["max_new_tokens"], pad_token_id=gen.tokenizer.pad_token_id)

        by_batch = {}
        for rows in s["ceiling_batches"]:
            generate(rows)  # warm-up at this batch size
            repeats = []
            for _ in range(s["ceiling_repeats"]):
                with measured({}) as m:
                    generate(rows)
                repeats.append({**m, "tok_s": round(rows * s["max_new_tokens"] / m["wall_s"], 1)})
            rate = [r["tok_s"] for r in repeats]
            by_batch[rows] = {"repeats": repeats, "tok_s": round(statistics.fmean(rate), 1),
                              "tok_s_min": min(rate), "tok_s_max": max(rate),
                              "tok_s_std": round(statistics.stdev(rate), 1) if len(rate) > 1 else 0.0,
                              "wall_s": round(statistics.fmean(r["wall_s"] for r in repeats), 2),
                              "peak_rss_mb": max(r["peak_rss_mb"] for r in repeats)}
    finally:
        gen.close()
    best = max(by_batch, key=lambda b: by_batch[b]["tok_s"])
    return {"prompt_tokens": len(ids), "repeats": s["ceiling_repeats"], "by_batch": by_batch, "best_batch": best,
            "tok_s": by_batch[best]["tok_s"]}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.manual_seed(0)
    result = ceiling(spec) if spec["kind"] == "ceiling" else iteration(spec)
    write_json(Path(spec["result"]), result)


if __name__ == "__main__":
    main(sys.argv[1])
