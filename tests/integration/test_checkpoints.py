"""What the training stages save: merged LoRA checkpoints, and the run-dtype cast of the saved weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from integration_helpers import load_cfg, run_cfg

LORA = "{r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}"
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}


def test_lora_stages_save_merged_plain_checkpoints(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from selfreward import pipeline
    from selfreward.rundir import RunDir

    cfg = load_cfg(tiny_model_dir, "iterations=1", "data.max_ift=2", "data.max_eft=1", f"sft.lora={LORA}",
                   f"dpo.lora={LORA}", "dpo.learning_rate=1e-3")
    rd = RunDir(tmp_path / "run")
    pipeline.prepare(rd, cfg, ["selfreward", "run"])
    pipeline.run_all(rd, cfg)

    base, m1, m2 = weights(tiny_model_dir), weights(rd.policy(1)), weights(rd.policy(2))
    for model_dir in (rd.policy(1), rd.policy(2)):
        names = {p.name for p in model_dir.iterdir()}
        assert "model.safetensors" in names and "config.json" in names
        assert not any(n.startswith("adapter") for n in names), "LoRA adapter saved instead of a merged model"
        AutoModelForCausalLM.from_pretrained(str(model_dir))  # a plain checkpoint: loads without peft
    assert set(m1) == set(m2) == set(base)  # no lora_A/lora_B or base_model.* names left
    for before, after in ((base, m1), (m1, m2)):
        for name in before:
            if name.endswith(tuple(f"{lin}.weight" for lin in LINEAR)):
                assert not torch.equal(before[name], after[name]), f"{name}: the adapter was not merged"
            else:  # embeddings and norms carry no adapter
                assert torch.equal(before[name], after[name]), f"{name} changed under LoRA"
    dpo = json.loads((rd.stage_dir(1) / "dpo.done.json").read_text())["stats"]
    # the reference is the adapter-free M1, so the first step starts from policy == reference
    assert dpo["steps"] == 1 and dpo["train_loss"] == pytest.approx(0.6931, abs=1e-3)


def test_dpo_update_survives_a_bf16_run(run_copy):
    from selfreward import pipeline
    from selfreward.rundir import RunDir, Stage

    # the run as it would be with model.dtype=bfloat16: M1 stored in bf16
    m1_file = run_copy / "sft" / "model" / "model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(m1_file)).items()}, str(m1_file),
              metadata={"format": "pt"})
    cfg = run_cfg(run_copy, "model.dtype=bfloat16", "dpo.learning_rate=5e-6")  # full training's DPO rate
    stats = pipeline.execute(RunDir(run_copy), cfg, Stage("dpo", 1))
    assert stats["steps"] == 1

    m1, m2 = weights(run_copy / "sft" / "model"), weights(run_copy / "iter1" / "model")
    changed = sum((m1[k] != m2[k]).sum().item() for k in m1)
    total = sum(v.numel() for v in m1.values())
    # in fp32 one Adam step moves every weight (tied embeddings get a dense gradient through the output layer)
    assert changed / total > 0.5, f"only {changed / total:.1%} of the weights of M2 differ from M1"
    norms = [k for k in m1 if k.endswith("norm.weight")]
    assert all(not torch.equal(m1[k], m2[k]) for k in norms), "norm weights came back unchanged"
