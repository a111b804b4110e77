#!/usr/bin/env python
"""Kill campaign (not in CI): SIGKILL a seeded run at random points of every stage, resume after each kill, and
check that the finished run equals an uninterrupted run of the same seed, file by file.

    python scripts/kill_campaign.py --kills 10                       # the default model, tiny-cpu at toy size
    python scripts/kill_campaign.py --model tiny --kills 3           # a 2-layer random Llama: minutes on a CPU
    python scripts/kill_campaign.py --kills 20 --set iterations=2 --set sample.max_new_tokens=64

How:
 1. baseline: `selfreward run --config RECIPE` with SELFREWARD_FAULT_LOG set, which lists every fault point the
    run passes (selfreward.faults: stage starts and ends, generation batches, JSONL and JSON writes including the
    done-markers, model saves; the evaluation stages have the same points).
 2. --kills points are drawn (seeded) from that list, spread over the stages, and sorted in run order. One run
    directory is started with SELFREWARD_KILL_AT=<first point>; the process SIGKILLs itself there. Then
    `selfreward status` must read the directory (exit 0), and the run is resumed with the next point, and so on:
    each point is reached again because a killed stage is redone from its start. A last resume has no kill.
 3. The finished directory is compared with the baseline: the same files; JSON and JSONL identical row for row
    except timings (*_seconds, times), resident memory, and the done-markers' random tokens, with the run
    directory's own path replaced by <RUN>; safetensors tensors identical, or within --atol (default 0: on a CPU
    the same seed gives the same bits; on a GPU, non-deterministic kernels may need a tolerance, which the table
    then states). The report's HTML, Markdown and PNG files and summary.txt print wall-clock times and are not
    compared; their numbers are in results.json and summary.json, which are.

It prints a table of kill points and outcomes, then the comparison, and exits 1 if any kill did not happen, any
command failed, or any file differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SELFREWARD = [sys.executable, "-m", "selfreward"]
# Toy size: every stage runs, in minutes. --set adds to (and overrides) these.
TOY = ["iterations=1", "data.max_ift=8", "data.max_eft=8", "sft.batch_size=4", "sft.max_length=768",
       "gen_prompts.num_prompts=3", "gen_prompts.max_new_tokens=16", "sample.n=4", "sample.max_new_tokens=16",
       "judge.k=2", "judge.max_new_tokens=24", "judge_eval.max_prompts=2", "eval.suites=[ifeval]",
       "eval.max_prompts=2", "eval.compare_prompts=2", "eval.max_new_tokens=16", "dpo.batch_size=4",
       "dpo.max_length=256", "generation.batch_size=8"]
NOT_COMPARED = {".lock", "manifest.json", "report.html", "report.md", "summary.txt"}  # invocations, clock times
# done-marker tokens (random), invocation times, and memory (resident set sizes vary from process to process)
VOLATILE = {"token", "after", "time", "created", "peak_rss_mb", "rss_before_mb", "rss_after_mb"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5, help="kill points, drawn over every stage (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="draws the kill points; also the run's seed")
    ap.add_argument("--model", default="default", help="default (SmolLM2-135M), a model directory or hub id, or "
                                                       "tiny: a 2-layer random Llama built in WORK (judged by the "
                                                       "fake backend, since it never writes a score)")
    ap.add_argument("--recipe", default="tiny-cpu")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override, repeatable")
    ap.add_argument("--atol", type=float, default=0.0, help="largest weight difference accepted (default 0)")
    ap.add_argument("--work", default="runs/kill-campaign", help="baseline, killed run and logs go here")
    args = ap.parse_args()

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    for var in ("SELFREWARD_KILL_AT", "SELFREWARD_FAIL_AT", "SELFREWARD_FAULT_LOG"):
        env.pop(var, None)
    overrides = [*TOY, f"seed={args.seed}", f"model.name={model_name(args.model, work)}"]
    if args.model == "tiny":
        overrides.append("judge.backend=fake")
    overrides += args.set

    baseline, killed, log = work / "baseline", work / "killed", work / "points.log"
    for path in (baseline, killed):
        if path.exists():
            sys.exit(f"{path} exists: remove it (or give another --work) so the campaign starts clean")
    log.unlink(missing_ok=True)
    start = time.time()
    first = [*SELFREWARD, "run", "--config", args.recipe, "--run-dir", str(baseline), *overrides]
    rc = run(first, {**env, "SELFREWARD_FAULT_LOG": str(log)}, work / "baseline.log")
    if rc != 0:
        sys.exit(f"the baseline run failed (exit {rc}); see {work / 'baseline.log'}")
    points = log.read_text().split()
    print(f"baseline: {len(points)} fault points passed, {time.time() - start:.0f}s ({baseline})")

    chosen = draw(points, args.kills, args.seed)
    rows, ok = [], True
    resume = [*SELFREWARD, "run", "--run-dir", str(killed)]
    for i, point in enumerate(chosen, 1):
        argv = [*SELFREWARD, "run", "--config", args.recipe, "--run-dir", str(killed), *overrides] if i == 1 \
            else resume
        t0 = time.time()
        rc = run(argv, {**env, "SELFREWARD_KILL_AT": point}, work / f"kill-{i}.log")
        status = run([*SELFREWARD, "status", str(killed)], env, work / f"status-{i}.log") \
            if (killed / "config.yaml").exists() else None
        # with stage_processes (tiny-cpu) the stage's own process is the one killed, and the run says so
        hit = rc == -signal.SIGKILL or rc == 2 and "was killed by SIGKILL" in (work / f"kill-{i}.log").read_text()
        outcome = ("killed" if hit else "finished: point not reached" if rc == 0 else f"failed: exit {rc}")
        if status not in (0, None):
            outcome += f"; status exit {status}"
        ok &= hit and status in (0, None)
        rows.append((i, point, f"{time.time() - t0:.0f}s", stages_done(killed), outcome))
    rc = run(resume, env, work / "resume.log")
    ok &= rc == 0
    rows.append(("-", "(none: final resume)", "", stages_done(killed), "finished" if rc == 0 else f"failed: exit {rc}"))
    print_table(["#", "kill point", "ran", "stages done after", "outcome"], rows)

    if rc == 0:
        same, diffs, notes = compare(baseline, killed, args.atol)
        print(f"\ncompared {same + len(diffs)} files with the uninterrupted run: {same} identical"
              + (f", {len(diffs)} differ" if diffs else ""))
        for line in notes:
            print(f"  note: {line}")
        for line in diffs:
            print(f"  DIFF: {line}")
        ok &= not diffs
    print("\nRESULT: " + ("every kill resumed to the uninterrupted run's files" if ok else "FAILED (see above)"))
    return 0 if ok else 1


def model_name(spec: str, work: Path) -> str:
    if spec != "tiny":
        return spec
    target = work / "tiny-model"
    if not (target / "model.safetensors").is_file():
        sys.path.insert(0, str(REPO / "tests" / "integration"))
        from transformers import AutoTokenizer

        from integration_helpers import save_tiny_llama
        from selfreward.config import ModelConfig
        from selfreward.models import default_model_dir

        tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir(ModelConfig())))
        save_tiny_llama(target, tokenizer)
    return str(target)


def run(argv: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("w") as out:
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode


def draw(points: list[str], n: int, seed: int) -> list[str]:
    """n distinct points, round-robin over the stages (scopes) in a seeded order, returned in run order."""
    rng = random.Random(seed)
    by_stage: dict[str, list[str]] = defaultdict(list)
    for p in dict.fromkeys(points):  # distinct, in order
        name = p.split("@")[0]
        by_stage[name.split(":", 1)[1] if ":" in name else "(prepare)"].append(p)
    stages = list(by_stage)
    rng.shuffle(stages)
    for s in stages:
        rng.shuffle(by_stage[s])
    chosen = []
    while len(chosen) < min(n, len(points)):
        for s in stages:
            if by_stage[s] and len(chosen) < n:
                chosen.append(by_stage[s].pop())
    order = {p: i for i, p in enumerate(points)}
    return sorted(chosen, key=order.__getitem__)


def stages_done(root: Path) -> str:
    return str(len(list(root.glob("*/*.done.json")))) if root.exists() else "0"


def print_table(header: list[str], rows: list[tuple]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


# comparison -------------------------------------------------------------------------------------------------------
def compare(a: Path, b: Path, atol: float) -> tuple[int, list[str], list[str]]:
    files_a, files_b = files(a), files(b)
    diffs = [f"only in the uninterrupted run: {p}" for p in sorted(files_a - files_b)]
    diffs += [f"only in the killed run: {p}" for p in sorted(files_b - files_a)]
    same, notes, worst = 0, [], 0.0
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        if rel.endswith(".safetensors"):
            why, diff = compare_weights(pa, pb, atol)
            worst = max(worst, diff)
        elif rel.endswith(".jsonl"):
            why = compare_jsonl(pa, pb, a, b)
        elif rel.endswith(".json"):
            why = compare_json(load_json(pa, a), load_json(pb, b))
        else:
            why = None if pa.read_bytes() == pb.read_bytes() else "bytes differ"
        if why:
            diffs.append(f"{rel}: {why}")
        else:
            same += 1
    if any(p.endswith(".safetensors") for p in files_a):
        notes.append("model weights bit-identical" if worst == 0 else
                     f"largest weight difference {worst:.3g} (tolerance {atol:g}: "
                     "non-deterministic kernels; CPU runs are expected to be exact)")
    notes.append("not compared (they print clock times): " + ", ".join(sorted(NOT_COMPARED - {".lock"}))
                 + ", report/*.png")
    return same, diffs, notes


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            and p.name not in NOT_COMPARED and not (p.parent.name == "report" and p.suffix == ".png")}


def normalise(value, root: Path):
    """Drop volatile keys and timings; the run directory's path reads <RUN>."""
    if isinstance(value, dict):
        return {k: normalise(v, root) for k, v in value.items()
                if k not in VOLATILE and not k.endswith(("_seconds", "_per_second"))}
    if isinstance(value, list):
        return [normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(str(root), "<RUN>")
    return value


def load_json(path: Path, root: Path):
    return normalise(json.loads(path.read_text(encoding="utf-8")), root)


def compare_json(x, y, where: str = "") -> str | None:
    if type(x) is not type(y) and not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
        return f"{where or 'value'}: {type(x).__name__} vs {type(y).__name__}"
    if isinstance(x, dict):
        if set(x) != set(y):
            return f"{where or 'top level'}: keys differ ({sorted(set(x) ^ set(y))})"
        for k in x:
            why = compare_json(x[k], y[k], f"{where}.{k}" if where else k)
            if why:
                return why
        return None
    if isinstance(x, list):
        if len(x) != len(y):
            return f"{where or 'list'}: {len(x)} vs {len(y)} items"
        for i, (u, v) in enumerate(zip(x, y)):
            why = compare_json(u, v, f"{where}[{i}]")
            if why:
                return why
        return None
    if x != y and not (x != x and y != y):  # NaN equals NaN here
        return f"{where or 'value'}: {str(x)[:60]!r} vs {str(y)[:60]!r}"
    return None


def compare_jsonl(pa: Path, pb: Path, ra: Path, rb: Path) -> str | None:
    rows_a = [json.loads(line) for line in pa.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows_b = [json.loads(line) for line in pb.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} vs {len(rows_b)} rows"
    for i, (x, y) in enumerate(zip(rows_a, rows_b), 1):
        why = compare_json(normalise(x, ra), normalise(y, rb))
        if why:
            return f"row {i}: {why}"
    return None


def compare_weights(pa: Path, pb: Path, atol: float) -> tuple[str | None, float]:
    from safetensors.torch import load_file

    ta, tb = load_file(str(pa)), load_file(str(pb))
    if set(ta) != set(tb):
        return f"tensor names differ ({sorted(set(ta) ^ set(tb))[:3]})", float("inf")
    worst = 0.0
    for name in ta:
        if ta[name].shape != tb[name].shape or ta[name].dtype != tb[name].dtype:
            return f"{name}: shape or dtype differs", float("inf")
        if ta[name].numel():
            worst = max(worst, (ta[name].double() - tb[name].double()).abs().max().item())
    return (None if worst <= atol else f"weights differ by up to {worst:.3g} (> --atol {atol:g})"), worst


if __name__ == "__main__":
    sys.exit(main())
