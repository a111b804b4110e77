"""GPU path: generation and a training step on CUDA with the default model. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from selfreward.backends import Sampling
from selfreward.backends.hf import HFGenerator
from selfreward.config import ModelConfig, load_config
from selfreward.models import default_model_dir

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_generation_on_cuda_bf16(model_cache):
    path = str(default_model_dir(ModelConfig(cache_dir=str(model_cache))))
    gen = HFGenerator(path, dtype=torch.bfloat16, batch_size=64)
    assert gen.model.device.type == "cuda"
    outs = gen.generate([[{"role": "user", "content": f"Name a color ({i})."}] for i in range(8)],
                        Sampling(n=4, temperature=0.7, top_p=0.9, max_new_tokens=32))
    gen.close()
    assert [len(o) for o in outs] == [4] * 8
    assert sum(bool(t) for o in outs for t in o) >= 28


def test_dpo_step_on_cuda(model_cache, tmp_path):
    from selfreward.stages import dpo

    cfg = load_config(None, [f"model.cache_dir={model_cache}", "dpo.batch_size=2", "dpo.max_length=256"])
    path = str(default_model_dir(cfg.model))
    pairs = [{"prompt": f"Say hi {i}", "chosen": "Hi there!", "rejected": "No."} for i in range(4)]
    trainer = dpo.build_trainer(cfg, path, tmp_path / "trainer", dpo.preference_rows(pairs))
    result = trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert result.global_step == 2
