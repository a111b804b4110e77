"""`selfreward bench`: one self-rewarding iteration's heavy stages (sample, judge, DPO) timed in the library's
configuration and in a naive configuration of the same code, in the same run, beside the machine's generation
ceiling for the model.

    fast   dtype auto (bf16 where the hardware has it); up to --batch-size sequences per forward pass within the
           memory budget; each prompt read once for its n samples; the prefix all judge prompts share (chat
           header and rubric) computed once per call; DPO in mixed precision, reference log-probs computed once
    naive  fp32; one sequence per forward pass, so every answer and every judgment re-reads its whole prompt;
           no shared prefix; DPO in fp32 with the reference model run at every step

Each configuration runs in a process of its own (bench_worker), so its peak memory is its own, and runs the real
stages (sample, judge, pairs, dpo through `pipeline.execute`) on a small run directory, WORK/<config>/run. The naive
one judges the fast one's answers and trains on its pairs: judge and DPO time the same work in both.

The ceiling is measured per batch size after one untimed warm-up at that batch size, as the mean of
`ceiling_repeats` timed generations, with their spread.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from selfreward.errors import UserError

STAGES = ["sample", "judge", "dpo"]
CONFIGS = {
    "fast": {"dtype": "auto", "reuse_prefix": True, "mixed_precision": "auto", "precompute_ref_log_probs": True},
    "naive": {"dtype": "float32", "batch_size": 1, "reuse_prefix": False, "mixed_precision": "fp32",
              "precompute_ref_log_probs": False},
}


@dataclass(frozen=True)
class BenchSettings:
    """The documented configuration (docs/benchmarks.md): the tiny-cpu recipe's per-iteration settings (n, answer
    and judgment lengths, k, DPO batch) on 8 prompts, so that the naive run ends within minutes on 2 CPU cores."""
    prompts: int = 8
    n: int = 4
    max_new_tokens: int = 128
    k: int = 3
    judge_max_new_tokens: int = 96
    batch_size: int = 64  # the largest batch the ceiling tries: the fast configuration is not capped below it
    dpo_batch_size: int = 4
    dpo_max_length: int = 768
    ceiling_batches: tuple[int, ...] = (8, 16, 32, 64)
    ceiling_repeats: int = 3  # timed generations per batch size, after one untimed warm-up at that size
    drift_candidates: int = 16


def run(model: str, settings: BenchSettings, naive: bool = True, work: Path | None = None) -> dict:
    from selfreward.config import ModelConfig
    from selfreward.data import load_ift
    from selfreward.models import resolve_model

    model_path = resolve_model(ModelConfig(name=model))
    prompts = [row["prompt"] for row in load_ift("builtin", settings.prompts, seed=0)]
    # the ceiling also at the rows the sample stage can fill at once: its fair reference
    settings = replace(settings, ceiling_batches=tuple(sorted({*settings.ceiling_batches, sample_rows(settings)})))
    with tempfile.TemporaryDirectory(prefix="selfreward-bench-") as tmp:
        root = Path(work or tmp)
        common = {"model": model_path, "prompts": prompts, "settings": asdict(settings)}
        report = {"model": model, "model_path": model_path, "settings": asdict(settings), "machine": machine()}
        report["ceiling"] = _spawn(root / "ceiling", {**common, "kind": "ceiling", "dtype": "auto"})
        report["fast"] = _spawn(root / "fast", {**common, "kind": "iteration", "batch_size": settings.batch_size,
                                                **CONFIGS["fast"]})
        fast_iter = Path(report["fast"]["run_dir"]) / "iter1"
        if naive:
            report["naive"] = _spawn(root / "naive", {**common, "kind": "iteration", **CONFIGS["naive"],
                                                      "judge_candidates": str(fast_iter / "candidates.jsonl"),
                                                      "dpo_pairs": str(fast_iter / "pairs.jsonl")})
        if work is not None:
            report["work"] = str(root)
        fast_pairs = _read_jsonl(fast_iter / "pairs.jsonl")
    report["summary"] = summarize(report, fast_pairs)
    return report


def _spawn(work: Path, spec: dict) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "work": str(work), "result": str(work / "result.json")}
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    name = work.name
    print(f"bench: running the {name} configuration", file=sys.stderr, flush=True)
    rc = subprocess.run([sys.executable, "-m", "selfreward.commands.bench_worker", str(work / "spec.json")]).returncode
    if rc != 0:
        raise UserError(f"benchmark configuration '{name}' failed (exit status {rc}); its output is above")
    return json.loads((work / "result.json").read_text())


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sample_rows(settings: BenchSettings) -> int:
    """The sequences the sample stage decodes at once: all of them (prompts x n), up to the batch size."""
    return min(settings.prompts * settings.n, settings.batch_size)


def summarize(report: dict, fast_pairs: list[dict]) -> dict:
    fast = report["fast"]["stages"]
    settings = BenchSettings(**{**report["settings"], "ceiling_batches": tuple(report["settings"]["ceiling_batches"])})
    rows = sample_rows(settings)
    at_rows = {int(b): v for b, v in report["ceiling"]["by_batch"].items()}.get(rows)  # JSON keys are strings
    rate = fast["sample"]["generated_tok_s"]
    out = {"iteration_s": {"fast": round(sum(fast[s]["wall_s"] for s in STAGES), 2)},
           "sample_fraction_of_ceiling": round(rate / report["ceiling"]["tok_s"], 3),
           "sample_rows": rows,
           "sample_fraction_of_ceiling_at_its_rows": round(rate / at_rows["tok_s"], 3) if at_rows else None,
           # the ceiling's rows all run to max_new_tokens; the stage's answers end where they end
           "sample_token_slots_filled": round(fast["sample"]["generated_tokens"]
                                              / (settings.prompts * settings.n * settings.max_new_tokens), 3)}
    if "naive" not in report:
        return out
    naive = report["naive"]["stages"]
    out["iteration_s"]["naive"] = round(sum(naive[s]["wall_s"] for s in STAGES), 2)
    out["speedup"] = {s: round(naive[s]["wall_s"] / fast[s]["wall_s"], 2) for s in STAGES}
    out["speedup"]["iteration"] = round(out["iteration_s"]["naive"] / out["iteration_s"]["fast"], 2)
    out["bf16_vs_fp32"] = {**logprob_drift(report["fast"]["response_logprobs"], report["naive"]["response_logprobs"]),
                           **judge_agreement(report["fast"]["judge_scores"], report["naive"]["judge_scores"],
                                             fast_pairs),
                           **expected_agreement(report["fast"]["expected_judgments"],
                                                report["naive"]["expected_judgments"])}
    return out


def logprob_drift(a: list[list[float]], b: list[list[float]]) -> dict:
    """Per-token log-probabilities of the same responses under both configurations' dtype."""
    diffs = [abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    if not diffs:
        return {"logprob_tokens": 0}
    means = [(statistics.fmean(ra), statistics.fmean(rb)) for ra, rb in zip(a, b) if ra]
    return {"logprob_tokens": len(diffs), "logprob_abs_diff_mean": round(statistics.fmean(diffs), 4),
            "logprob_abs_diff_max": round(max(diffs), 4),
            "response_mean_logprob_abs_diff": round(statistics.fmean(abs(x - y) for x, y in means), 4)}


def judge_agreement(fast: list[float | None], naive: list[float | None], pairs: list[dict]) -> dict:
    """The two judges scored the same answers; sampled judgments differ by sampling noise as well as by dtype."""
    both = [(f, n) for f, n in zip(fast, naive) if f is not None and n is not None]
    judged = [p for p in pairs if p["judged"]]
    same_order = sum(naive[p["chosen_id"]] is not None and naive[p["rejected_id"]] is not None
                     and naive[p["chosen_id"]] > naive[p["rejected_id"]] for p in judged)
    return {"judge_scored_by_both": len(both),
            "judge_mean_score": {"fast": _mean([f for f, _ in both]), "naive": _mean([n for _, n in both])},
            "judge_mean_abs_diff": _mean([abs(f - n) for f, n in both]),
            "judged_pairs": len(judged), "pairs_same_order_by_naive_judge": same_order}


def expected_agreement(a: dict, b: dict) -> dict:
    """Greedy judgments and expected scores of the same answers: no sampling, so differences come from the dtype."""
    both = [(x, y) for x, y in zip(a["score"], b["score"]) if x is not None and y is not None]
    diffs = [abs(x - y) for x, y in both]
    return {"expected_judgments": len(a["raw"]),
            "expected_greedy_texts_identical": sum(x == y for x, y in zip(a["raw"], b["raw"])),
            "expected_scored_by_both": len(both), "expected_score_abs_diff_mean": _mean(diffs),
            "expected_score_abs_diff_max": round(max(diffs), 3) if diffs else None,
            # half up, as judge_metrics counts them
            "expected_rounded_scores_agree": sum(math.floor(x + 0.5) == math.floor(y + 0.5) for x, y in both)}


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def machine() -> dict:
    import torch
    import transformers
    import trl

    from selfreward.models import bf16_supported

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "bf16": bf16_supported(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def table(report: dict) -> str:
    configs = [c for c in ("fast", "naive") if c in report]
    rows = [("stage", "metric", *configs, "naive/fast" if len(configs) == 2 else "")]
    metrics = {"sample": ["wall_s", "generated_tok_s", "processed_tok_s", "peak_rss_mb"],
               "judge": ["wall_s", "generated_tok_s", "processed_tok_s", "peak_rss_mb"],
               "dpo": ["wall_s", "s_per_step", "tok_s", "peak_rss_mb"]}
    for stage, keys in metrics.items():
        for key in keys:
            values = [report[c]["stages"][stage][key] for c in configs]
            ratio = f"{values[1] / values[0]:.2f}x" if len(values) == 2 and key in ("wall_s", "s_per_step") \
                and None not in values and values[0] else ""
            rows.append((stage, key, *("-" if v is None else str(v) for v in values), ratio))
    s = report["summary"]
    ratio = f"{s['speedup']['iteration']:.2f}x" if "speedup" in s else ""
    rows.append(("iteration", "wall_s", *(str(s["iteration_s"][c]) for c in configs), ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    c = report["ceiling"]
    lines.append(f"\nceiling: {c['tok_s']} generated tok/s (batch {c['best_batch']}); sample stage at "
                 f"{s['sample_fraction_of_ceiling']:.0%} of it")
    if s.get("sample_fraction_of_ceiling_at_its_rows") is not None:
        lines.append(f"  at the {s['sample_rows']} rows the sample stage decodes at once: sample stage at "
                     f"{s['sample_fraction_of_ceiling_at_its_rows']:.0%} of the ceiling there; its answers filled "
                     f"{s['sample_token_slots_filled']:.0%} of the token slots the ceiling fills (answers that end "
                     "before max_new_tokens)")
    lines.append(f"  per batch, mean of {c['repeats']} after a warm-up [min-max, std]: "
                 + ", ".join(f"{b}: {v['tok_s']} [{v['tok_s_min']}-{v['tok_s_max']}, {v['tok_s_std']}]"
                             for b, v in c["by_batch"].items()))
    if "bf16_vs_fp32" in s:
        lines.append(f"{report['fast']['dtype']} (fast) vs {report['naive']['dtype']} (naive), same answers:")
        lines += [f"  {key}: {value}" for key, value in s["bf16_vs_fp32"].items()]
    return "\n".join(lines)


def command(ns) -> int:
    from selfreward.commands.bench import BenchSettings, run, table
    from selfreward.records import write_json

    try:
        batches = tuple(int(x) for x in ns.ceiling_batches.split(","))
    except ValueError:
        raise UserError(f"--ceiling-batches must be integers separated by commas, got {ns.ceiling_batches!r}") from None
    settings = BenchSettings(prompts=ns.prompts, n=ns.n, max_new_tokens=ns.max_new_tokens, k=ns.k,
                             judge_max_new_tokens=ns.judge_max_new_tokens, batch_size=ns.batch_size,
                             dpo_batch_size=ns.dpo_batch_size, ceiling_batches=batches)
    small = {k: v for k, v in vars(settings).items() if k != "ceiling_batches" and v < (2 if k == "n" else 1)}
    if small or min(batches) < 1:
        raise UserError(f"bench: {', '.join(small) or '--ceiling-batches'} must be at least 1 (--n at least 2)")
    report = run(ns.model, settings, naive=ns.naive, work=Path(ns.work) if ns.work else None)
    print(table(report))
    if ns.out:
        write_json(Path(ns.out), report)
        print(f"\nReport in {ns.out}")
    return 0
