"""What SFT and DPO share: trainer arguments, the model to start from, length filtering, saving the result.

Training runs through TRL's stable trainers, so the same code runs in-process or under `accelerate launch`
(DDP, FSDP, DeepSpeed): accelerate decides the devices, these functions do not.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from selfreward import faults, records
from selfreward.config import DPOConfig, LoraConfig, RunConfig, SFTConfig
from selfreward.errors import UserError
from selfreward.models import bf16_supported, load_tokenizer

# The most tokens one forward pass takes (sequences x max_length at their longest). A batch larger than that is
# split into equal micro-batches whose gradients add up before the optimizer step (gradient accumulation), so the
# step is the batch's: the losses are per token (SFT: normalised over the whole batch's tokens) or per pair (DPO:
# equal micro-batches). Activations grow with the tokens of a pass: at batch 8 x 640 tokens the default 135M model
# took 11 GB in one SFT step, over four times its weights, gradients and AdamW state. Fixed, not sized to the free
# memory, so that a run, and a run resumed after a kill, split every batch the same way. 1024, not 2048: tiny-cpu's
# SFT then takes one sequence a pass instead of two, and peaked 0.27 GB lower (3.58 GB, AdamW) in no more time.
TOKENS_PER_PASS = 1024

# On a CPU, bf16 matmuls go through oneDNN, which compiles a kernel for every input shape it meets and caches it
# (1,024 entries). Batches padded to their own longest sequence give nearly every micro-batch a new shape, so the
# cache, and the process, grew by 0.1-0.2 GB a step: SFT of the default model peaked at 5.8 GB after 13 steps,
# 4.0 GB with lengths padded to a multiple of 64, at 10% less time (docs/benchmarks.md). Pads are masked out of
# attention and loss. On a GPU, TRL's default (no padding) stays.
CPU_PAD_MULTIPLE = 64


def micro_batch(batch_size: int, tokens_per_example: int) -> int:
    """Examples per forward pass: the largest divisor of batch_size whose examples fit TOKENS_PER_PASS (1 at
    least)."""
    return max(d for d in range(1, batch_size + 1)
               if batch_size % d == 0 and (d == 1 or d * tokens_per_example <= TOKENS_PER_PASS))


# TRL's fused LM head gives SFT's and DPO's token log-probabilities (and SFT's entropy and accuracy metrics) without
# the full logits: it projects tiles of TOKEN_CHUNK_SIZE tokens x _CHUNKED_LOGPROB_CHUNK_SIZE vocabulary entries
# (4096 x 32768 in TRL 1.16). Without Triton (on a CPU) its torch fallback holds about six fp32 copies of a tile in
# the backward pass: for a micro-batch of 2 x 629 tokens of the default model (vocabulary 49152), 1 GB of the
# step's peak. Tiles of 1024 x 8192 hold 0.1 GB; the sums are the same up to rounding (the loss to the last digit).
LM_HEAD_TILE = (1024, 8192)


def small_lm_head_tiles() -> None:
    """Smaller tiles for TRL's fused LM head when training runs without Triton (see LM_HEAD_TILE); on a GPU its
    kernel's tiles stay. TRL reads both sizes at each call."""
    if torch.cuda.is_available():
        return
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils

    tokens, vocab = LM_HEAD_TILE
    if getattr(kernel, "TOKEN_CHUNK_SIZE", 0) > tokens:
        kernel.TOKEN_CHUNK_SIZE = tokens
    if getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", 0) > vocab:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = vocab


def trainer_kwargs(c: SFTConfig | DPOConfig, cfg: RunConfig, out: Path, sequences: int = 1) -> dict[str, Any]:
    """`sequences`: sequences per example in a forward pass (DPO: chosen and rejected, 2)."""
    bf16 = c.mixed_precision == "bf16" or (c.mixed_precision == "auto" and bf16_supported())
    micro = micro_batch(c.batch_size, c.max_length * sequences)
    return dict(
        output_dir=str(out), num_train_epochs=c.epochs, learning_rate=c.learning_rate,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": c.min_learning_rate},
        warmup_steps=c.warmup_ratio,  # a float < 1 is a ratio of the total steps
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=c.grad_accum * (c.batch_size // micro), max_length=c.max_length, bf16=bf16,
        activation_checkpointing=c.gradient_checkpointing, seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to="none", logging_steps=1,
        disable_tqdm=False, dataloader_num_workers=0, optim=c.optim,
        pad_to_multiple_of="auto" if torch.cuda.is_available() else CPU_PAD_MULTIPLE,
    )


def load_trainable(path: str, cfg: RunConfig):
    from transformers import AutoModelForCausalLM

    # fp32 weights, also under LoRA (its merge would otherwise round small updates away); bf16 enters through
    # autocast (mixed precision).
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                                    trust_remote_code=cfg.model.trust_remote_code)
    except Exception as e:  # missing or damaged weights raise OSError, ValueError, safetensors errors...: one line
        text = str(e).strip()
        raise UserError(f"could not load model '{path}' for training: {type(e).__name__}: "
                        f"{text.splitlines()[0][:300] if text else 'no message'}") from None


def training_tokenizer(path: str, cfg: RunConfig):
    return load_tokenizer(path, cfg.model.trust_remote_code, padding_side="right",
                          chat_template=cfg.model.chat_template)


def peft_config(lora: LoraConfig | None):
    if lora is None:
        return None
    from peft import LoraConfig as PeftLora

    return PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                    target_modules=lora.target_modules, task_type="CAUSAL_LM")


def token_length(tokenizer, messages: list[dict[str, str]]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def save_final(trainer, tokenizer, target: Path) -> None:
    """Save the trained model as safetensors at `target`, atomically (merged when LoRA was used).

    Weights stay fp32: a DPO step at lr 1e-6 moves most weights by less than half a bf16 step, so a bf16
    checkpoint would round M_{t+1} back to M_t. Generation still loads them in the run's dtype.
    """
    tmp = target.with_name(target.name + ".tmp")
    main = trainer.accelerator.is_main_process
    records.about_to_write()  # the stage's old done-marker goes now (pipeline.execute)
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run
    trainer.accelerator.wait_for_everyone()
    try:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(unwrapped, "merge_and_unload"):
            merged = unwrapped.merge_and_unload()
            if main:
                merged.save_pretrained(tmp, safe_serialization=True)
        else:
            trainer.save_model(str(tmp))  # gathers sharded (FSDP/ZeRO-3) weights; writes on the main process only
        trainer.accelerator.wait_for_everyone()
        if main:
            tokenizer.padding_side = "left"
            tokenizer.save_pretrained(tmp)
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run dir keeps the config as YAML
            faults.point("model-save")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # nothing in it: checkpoints are off
    except Exception as e:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        if _disk_error(e):  # a full disk or read-only directory: one line; the stage is redone on the next run
            raise UserError(f"could not save the model to {target}: {str(e).strip().splitlines()[0][:300]}") from None
        raise
    trainer.accelerator.wait_for_everyone()


def _disk_error(e: Exception) -> bool:
    """OSError, or safetensors' own error type wrapping one (it reports "No space left on device (os error 28)")."""
    return isinstance(e, OSError) or type(e).__name__ == "SafetensorError" and "os error" in str(e)


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process
