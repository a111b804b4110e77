"""sft.optim / dpo.optim reach the trainer: Adafactor keeps no AdamW moments (the memory the option exists for)."""

from __future__ import annotations

import pytest

from integration_helpers import load_cfg

ROWS = [{"prompt": [{"role": "user", "content": f"Say {w}."}], "completion": [{"role": "assistant", "content": w}]}
        for w in ("one", "two")]


def _train(cfg, model_dir, tmp_path):
    from selfreward.stages.sft import build_trainer

    trainer = build_trainer(cfg, str(model_dir), tmp_path, ROWS)
    trainer.train()
    return trainer


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "adafactor"])
def test_sft_optimizer_is_the_configured_one(tiny_model_dir, tmp_path, optim):
    cfg = load_cfg(tiny_model_dir, "sft.batch_size=2", f"sft.optim={optim}")
    trainer = _train(cfg, tiny_model_dir, tmp_path)
    opt = trainer.optimizer.optimizer
    assert type(opt).__name__ == ("AdamW" if optim.startswith("adamw") else "Adafactor")
    matrices = [(p, opt.state[p]) for p in trainer.model.parameters() if p.dim() == 2]
    assert matrices and all(state for _, state in matrices)
    for p, state in matrices:
        if optim == "adafactor":  # no first moment; the second factored into a row and a column
            assert "exp_avg" not in state and "exp_avg_sq" not in state
            assert state["exp_avg_sq_row"].numel() + state["exp_avg_sq_col"].numel() == sum(p.shape)
        else:
            assert state["exp_avg"].shape == state["exp_avg_sq"].shape == p.shape


def test_dpo_passes_its_optimizer(tiny_model_dir):
    from selfreward.stages.training import trainer_kwargs

    cfg = load_cfg(tiny_model_dir, "dpo.optim=adafactor")
    assert trainer_kwargs(cfg.dpo, cfg, tiny_model_dir, sequences=2)["optim"] == "adafactor"
