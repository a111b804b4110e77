"""`selfreward build-eft`: EFT data the paper's way, in a directory of its own.

    OUT/sft/model              the judge, unless --model names one: SFT on IFT only (the paper's SFT baseline)
    OUT/judgments.jsonl        one rubric judgment row per response, raw texts kept
    OUT/eft_train.jsonl        kept judgments as EFT rows (use as data.eft_train)
    OUT/eft_eval.jsonl         the same, for held-out prompts (use as data.eft_eval)
    OUT/stats.json             kept / dropped counts, score histograms before and after rebalancing

Finished steps are skipped when the command is run again with the same settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfreward.backends import open_generator
from selfreward.config import ModelConfig, RunConfig
from selfreward.judges import templates
from selfreward.judges.eft import build
from selfreward.judges.scorers import needs, score_items
from selfreward.models import resolve_model
from selfreward.pipeline import execute, prepare, state
from selfreward.records import read_jsonl, write_json, write_jsonl
from selfreward.rundir import RunDir, Stage


def run_build(cfg: RunConfig, groups: list[dict], out: Path, model: str | None, eval_fraction: float,
              argv: list[str]) -> dict:
    rd = RunDir(out)
    judge_model = resolve_model(ModelConfig(name=model, cache_dir=cfg.model.cache_dir,
                                            trust_remote_code=cfg.model.trust_remote_code)) if model \
        else _sft_baseline(rd, cfg, argv)
    rows = _judgments(rd, cfg, groups, judge_model)
    result = build(groups, rows, eval_fraction=eval_fraction, seed=cfg.seed)
    write_jsonl(out / "eft_train.jsonl", result["train"])
    write_jsonl(out / "eft_eval.jsonl", result["eval"])
    stats = {"judge_model": judge_model, "judge_mode": cfg.judge.mode, **result["stats"]}
    write_json(out / "stats.json", stats)
    return stats


def _sft_baseline(rd: RunDir, cfg: RunConfig, argv: list[str]) -> str:
    """The IFT-only SFT model, trained once into OUT/sft with the recipe's SFT settings."""
    cfg.data.max_eft = 0
    prepare(rd, cfg, argv)
    stage = Stage("sft", 0)
    if state(rd, cfg, stage) != "done":
        print("[run ] sft on IFT only (the judge that writes the EFT judgments)", flush=True)
        execute(rd, cfg, stage)
    else:
        print("[skip] sft on IFT only: done", flush=True)
    return str(rd.policy(1))


def _judgments(rd: RunDir, cfg: RunConfig, groups: list[dict], judge_model: str) -> list[dict]:
    path = rd.root / "judgments.jsonl"
    key = {"judge_model": judge_model, "judge": json.loads(json.dumps(cfg.judge.__dict__)), "seed": cfg.seed,
           "responses": [r.get("id", r["text"][:64]) for g in groups for r in g["responses"]]}
    done = rd.root / "judgments.done.json"
    if done.is_file() and json.loads(done.read_text()) == key and path.is_file():
        print("[skip] judgments: done", flush=True)
        return [{k: v for k, v in r.items() if k not in ("group_id", "text")} for r in read_jsonl(path)]
    items = [(g["prompt"], r["text"]) for g in groups for r in g["responses"]]
    gen = open_generator(cfg, judge_model, role="judge", needs=needs(cfg.judge), purpose=f"judge.mode={cfg.judge.mode}")
    try:
        rows = score_items(gen, templates.load("rubric", cfg.judge.template), items, cfg.judge, cfg.seed,
                           desc="build-eft judge")
    finally:
        gen.close()
    ids = [(g["id"], r["text"]) for g in groups for r in g["responses"]]
    write_jsonl(path, [{"group_id": gid, "text": text, **row} for (gid, text), row in zip(ids, rows)])
    write_json(done, key)
    return rows
