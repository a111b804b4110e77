"""Stage dpo: M_{t+1} = DPO from M_t on iteration t's pairs, with M_t as the frozen reference."""

from __future__ import annotations

import time

from selfreward.config import RunConfig
from selfreward.errors import UserError
from selfreward.records import read_jsonl
from selfreward.rundir import RunDir
from selfreward.stages.training import (load_trainable, peft_config, save_final, token_length, trainer_kwargs,
                                        training_tokenizer)


def preference_rows(pairs: list[dict]) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]


def build_trainer(cfg: RunConfig, model_path: str, out_dir, rows: list[dict]):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tokenizer = training_tokenizer(model_path, cfg)
    tokenizer.padding_side = "left"  # DPOTrainer requires it
    args = DPOConfig(**trainer_kwargs(cfg.dpo, cfg, out_dir), beta=cfg.dpo.beta,
                     precompute_ref_log_probs=cfg.dpo.precompute_ref_log_probs)
    # ref_model=None: TRL takes a frozen copy of the starting model (M_t), or the adapter-free base with LoRA.
    return DPOTrainer(model=load_trainable(model_path, cfg), ref_model=None, args=args,
                      train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                      peft_config=peft_config(cfg.dpo.lora))


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    start = time.time()
    pairs = read_jsonl(rd.artifact(t, "pairs.jsonl"))
    model_path = str(rd.policy(t))
    tokenizer = training_tokenizer(model_path, cfg)
    rows = [r for r in preference_rows(pairs)
            if max(token_length(tokenizer, r["prompt"] + r[k]) for k in ("chosen", "rejected")) <= cfg.dpo.max_length]
    if not rows:
        raise UserError(f"iteration {t}: no preference pair to train on ({len(pairs)} pairs, "
                        f"{len(pairs) - len(rows)} over dpo.max_length); see {rd.artifact(t, 'judgments.jsonl')} "
                        "for judge output, or raise sample.n / judge.k")
    trainer = build_trainer(cfg, model_path, rd.stage_dir(t) / "trainer", rows)
    result = trainer.train()
    save_final(trainer, trainer.processing_class, rd.stage_dir(t) / "model")
    return {"pairs_used": len(rows), "dropped_too_long": len(pairs) - len(rows), "steps": result.global_step,
            "train_loss": round(result.training_loss, 4), "train_seconds": round(time.time() - start, 1)}
