"""Stage sft: M1 = SFT of the base model on IFT + EFT, loss on the assistant turn only."""

from __future__ import annotations

import time

from selfreward.config import RunConfig
from selfreward.data import load_eft, load_ift
from selfreward.judges import templates
from selfreward.models import resolve_model
from selfreward.stages.spec import Context, StageSpec


def examples(cfg: RunConfig) -> list[dict]:
    """Prompt-completion chat examples: TRL masks the prompt, so only the assistant turn carries loss."""
    template = templates.load("rubric", cfg.judge.template)
    ift = load_ift(cfg.data.ift, cfg.data.max_ift, cfg.seed)
    eft = load_eft(cfg.data.eft_train, "eft_train", cfg.data.max_eft, cfg.seed)
    rows = [(r["prompt"], r["response"]) for r in ift]
    rows += [(templates.render(template, {"instruction": r["prompt"], "response": r["response"]}), r["target"])
             for r in eft]
    return [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}]}
            for p, c in rows]


def build_trainer(cfg: RunConfig, model_path: str, out_dir, rows: list[dict]):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from selfreward.stages.training import (
        load_trainable,
        peft_config,
        small_lm_head_tiles,
        trainer_kwargs,
        training_tokenizer,
    )

    small_lm_head_tiles()
    args = SFTConfig(**trainer_kwargs(cfg.sft, cfg, out_dir), completion_only_loss=True)
    return SFTTrainer(model=load_trainable(model_path, cfg), args=args,
                      train_dataset=Dataset.from_list(rows), processing_class=training_tokenizer(model_path, cfg),
                      peft_config=peft_config(cfg.sft.lora))


def run(ctx: Context) -> dict:
    from selfreward.stages.training import save_final, token_length, training_tokenizer

    rd, cfg = ctx.rd, ctx.cfg
    start = time.time()
    model_path = resolve_model(cfg.model)
    tokenizer = training_tokenizer(model_path, cfg)
    rows = examples(cfg)
    # An over-long example would be cut at max_length and lose its target (the score line): drop it instead.
    kept = [r for r in rows if token_length(tokenizer, r["prompt"] + r["completion"]) <= cfg.sft.max_length]
    out = rd.stage_dir(0)
    trainer = build_trainer(cfg, model_path, out / "trainer", kept)
    result = trainer.train()
    save_final(trainer, trainer.processing_class, out / "model")
    return {"examples": len(kept), "dropped_too_long": len(rows) - len(kept), "steps": result.global_step,
            "train_loss": round(result.training_loss, 4), "train_seconds": round(time.time() - start, 1)}


STAGE = StageSpec("sft", run, deps=("model.name", "model.trust_remote_code", "model.chat_template", "data.ift",
                                    "data.eft_train", "data.max_ift", "data.max_eft", "judge.template", "sft", "seed"),
                  reads=(), writes=("sft/model",), command=True, training=True,
                  summary="M1 = SFT of the base model on IFT + EFT")
