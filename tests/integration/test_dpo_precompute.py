"""DPO with the reference log-probs computed once before training gives the losses of recomputing them every step
(tiny random Llama, fp32)."""

from __future__ import annotations

import math

import pytest

from integration_helpers import load_cfg

PAIRS = [
    {"prompt": "What is two plus two?", "chosen": "Two plus two is four.", "rejected": "Five."},
    {"prompt": "Give me a synonym for happy.", "chosen": "Glad", "rejected": "Joyful: it is stronger than happy."},
    {"prompt": "Say hi.", "chosen": "Hi there! How can I help you today?", "rejected": "Hello"},
    {"prompt": "Name a prime number.", "chosen": "Seven.", "rejected": "Nine, which is not prime at all."},
]


def train(model_dir, out, precompute: bool):
    from selfreward.stages.dpo import build_trainer, preference_rows

    # a learning rate that moves the tiny model within one step, so later losses leave log 2
    cfg = load_cfg(model_dir, "dpo.mixed_precision=fp32", f"dpo.precompute_ref_log_probs={str(precompute).lower()}",
                   "dpo.batch_size=2", "dpo.learning_rate=0.05", "dpo.min_learning_rate=0.05", "dpo.epochs=2")
    trainer = build_trainer(cfg, str(model_dir), out, preference_rows(PAIRS))
    trainer.train()
    return trainer, [h for h in trainer.state.log_history if "loss" in h]


def test_cached_reference_log_probs_give_the_same_losses(tiny_model_dir, tmp_path):
    cached, cached_logs = train(tiny_model_dir, tmp_path / "cached", precompute=True)
    recomputed, recomputed_logs = train(tiny_model_dir, tmp_path / "recomputed", precompute=False)
    assert cached.ref_model is None and recomputed.ref_model is not None  # the saving: no second model in memory
    assert "ref_chosen_logps" in cached.train_dataset.column_names
    assert len(cached_logs) == len(recomputed_logs) == 4  # 4 pairs / 2 per step x 2 epochs
    losses = [h["loss"] for h in cached_logs]
    assert losses == pytest.approx([h["loss"] for h in recomputed_logs], abs=1e-5)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the first step
    assert abs(losses[-1] - math.log(2)) > 1e-2  # later steps moved: the comparison is not log 2 against log 2
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen"):
        a = [h[key] for h in cached_logs if key in h]
        assert a and a == pytest.approx([h[key] for h in recomputed_logs], abs=1e-4)
