"""Stage dpo: M_{t+1} = DPO from M_t on iteration t's pairs, with M_t as the frozen reference.

In a Meta-Rewarding run (meta.enabled) it trains on the actor pairs and the meta-judge stage's judge pairs together:
a seeded sample of the judge pairs, as many as keep them at most meta.judge_pair_share of all pairs; a judge pair's
prompt is the rubric judge prompt of an answer, its chosen and rejected texts two judgments of it. The marker's
stats record the mix (actor_pairs, judge_pairs, judge_pair_share). Whether judge pairs are used is read from the
done-markers (stages.meta_judge.judge_pairs_for_dpo), so a run without meta-judging keeps its markers as they were."""

from __future__ import annotations

import time

from selfreward.config import RunConfig
from selfreward.errors import UserError
from selfreward.judges.meta import judge_pair_count, sample_rows
from selfreward.records import read_jsonl
from selfreward.stages.meta_judge import judge_pairs_for_dpo
from selfreward.stages.spec import Context, StageSpec


def preference_rows(pairs: list[dict]) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]


def build_trainer(cfg: RunConfig, model_path: str, out_dir, rows: list[dict]):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from selfreward.stages.training import (
        load_trainable,
        peft_config,
        small_lm_head_tiles,
        trainer_kwargs,
        training_tokenizer,
    )

    small_lm_head_tiles()
    tokenizer = training_tokenizer(model_path, cfg)
    tokenizer.padding_side = "left"  # DPOTrainer requires it
    d = cfg.dpo
    # RPO is DPO plus an NLL term on the chosen answer: TRL's "sft" loss beside the preference loss, weighted.
    losses = {"loss_type": [d.loss_type, "sft"], "loss_weights": [1.0, d.rpo_alpha]} if d.rpo_alpha is not None \
        else {"loss_type": [d.loss_type]}
    # The reference pass keeps no activations for a backward: it reads the batch's pairs in one pass.
    args = DPOConfig(**trainer_kwargs(d, cfg, out_dir, sequences=2), beta=d.beta,
                     precompute_ref_log_probs=d.precompute_ref_log_probs, precompute_ref_batch_size=d.batch_size,
                     ld_alpha=d.ld_alpha, **losses)
    # ref_model=None: TRL takes a frozen copy of the starting model (M_t), or the adapter-free base with LoRA.
    return DPOTrainer(model=load_trainable(model_path, cfg), ref_model=None, args=args,
                      train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                      peft_config=peft_config(cfg.dpo.lora))


def run(ctx: Context) -> dict:
    from selfreward.stages.training import save_final, token_length, training_tokenizer

    rd, cfg, t = ctx.rd, ctx.cfg, ctx.t
    start = time.time()
    pairs = read_jsonl(rd.artifact(t, "pairs.jsonl"))
    judge = judge_pairs_for_dpo(rd, t)
    model_path = str(rd.policy(t))
    tokenizer = training_tokenizer(model_path, cfg)

    def fitting(found: list[dict]) -> list[dict]:
        return [r for r in preference_rows(found) if max(token_length(tokenizer, r["prompt"] + r[k])
                                                         for k in ("chosen", "rejected")) <= cfg.dpo.max_length]

    rows = fitting(pairs)
    actor, mix = len(rows), {}
    if judge is not None:
        judge_pairs, share = judge
        usable = fitting(judge_pairs)
        n = judge_pair_count(actor, len(usable), share)
        rows += sample_rows(usable, n, cfg.seed + t)
        mix = {"actor_pairs": actor, "judge_pairs": n, "judge_pair_share": round(n / len(rows), 4) if rows else 0.0,
               "judge_pair_share_max": share, "judge_pairs_available": len(usable),
               "judge_pairs_too_long": len(judge_pairs) - len(usable)}
    if not rows:
        raise UserError(f"iteration {t}: no preference pair to train on ({len(pairs)} pairs, "
                        f"{len(pairs) - len(rows)} over dpo.max_length); see {rd.artifact(t, 'judgments.jsonl')} "
                        "for judge output, or raise sample.n / judge.k")
    trainer = build_trainer(cfg, model_path, rd.stage_dir(t) / "trainer", rows)
    result = trainer.train()
    save_final(trainer, trainer.processing_class, rd.stage_dir(t) / "model")
    return {"pairs_used": len(rows), "dropped_too_long": len(pairs) - actor, "steps": result.global_step,
            "train_loss": round(result.training_loss, 4), "train_seconds": round(time.time() - start, 1), **mix}


STAGE = StageSpec("dpo", run, deps=("model.trust_remote_code", "model.chat_template", "dpo", "seed"),
                  reads=("iter{t}/pairs.jsonl", "iter{t}/judge_pairs.jsonl (meta.enabled)", "{policy}"),
                  writes=("iter{t}/model",), command=True, training=True,
                  summary="M_(t+1) = DPO from M_t on the pairs, M_t as the reference")
