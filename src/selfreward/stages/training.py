"""What SFT and DPO share: trainer arguments, the model to start from, length filtering, saving the result.

Training runs through TRL's stable trainers, so the same code runs in-process or under `accelerate launch`
(DDP, FSDP, DeepSpeed): accelerate decides the devices, these functions do not.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from selfreward.config import DPOConfig, LoraConfig, RunConfig, SFTConfig
from selfreward.models import bf16_supported, load_tokenizer, resolve_dtype


def trainer_kwargs(c: SFTConfig | DPOConfig, cfg: RunConfig, out: Path) -> dict[str, Any]:
    bf16 = c.mixed_precision == "bf16" or (c.mixed_precision == "auto" and bf16_supported())
    return dict(
        output_dir=str(out), num_train_epochs=c.epochs, learning_rate=c.learning_rate,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": c.min_learning_rate},
        warmup_steps=c.warmup_ratio,  # a float < 1 is a ratio of the total steps
        per_device_train_batch_size=c.batch_size,
        gradient_accumulation_steps=c.grad_accum, max_length=c.max_length, bf16=bf16,
        activation_checkpointing=c.gradient_checkpointing, seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=False, dataloader_num_workers=0,
    )


def load_trainable(path: str, cfg: RunConfig, lora: LoraConfig | None):
    from transformers import AutoModelForCausalLM

    # Full fine-tuning keeps fp32 master weights (bf16 enters through autocast); a frozen LoRA base needs no
    # master copy and loads in the run's dtype.
    dtype = resolve_dtype(cfg.model.dtype) if lora else torch.float32
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                trust_remote_code=cfg.model.trust_remote_code)


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


def save_final(trainer, tokenizer, target: Path, dtype: torch.dtype) -> None:
    """Save the trained model as `dtype` safetensors at `target`, atomically (merged when LoRA was used)."""
    tmp = target.with_name(target.name + ".tmp")
    main = trainer.accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run
    trainer.accelerator.wait_for_everyone()
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(unwrapped, "merge_and_unload"):
        merged = unwrapped.merge_and_unload()
        if main:
            merged.save_pretrained(tmp, safe_serialization=True)
    else:
        trainer.save_model(str(tmp))  # gathers sharded (FSDP/ZeRO-3) weights; writes on the main process only
    trainer.accelerator.wait_for_everyone()
    if main:
        cast_checkpoint(tmp, dtype)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run dir keeps the config as YAML
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    trainer.accelerator.wait_for_everyone()


def cast_checkpoint(path: Path, dtype: torch.dtype) -> None:
    """Cast floating-point tensors of every safetensors shard to `dtype`, one shard in memory at a time.

    Training keeps fp32 master weights; the checkpoint is stored in the run's dtype (half the size in bf16).
    """
    from safetensors.torch import load_file, save_file

    for shard in sorted(path.glob("*.safetensors")):
        tensors = load_file(shard)
        if all(t.dtype == dtype or not t.is_floating_point() for t in tensors.values()):
            continue
        save_file({k: t.to(dtype) if t.is_floating_point() else t for k, t in tensors.items()}, shard,
                  metadata={"format": "pt"})
    config = path / "config.json"
    data = json.loads(config.read_text())
    data["dtype"] = str(dtype).removeprefix("torch.")
    config.write_text(json.dumps(data, indent=2) + "\n")


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process
