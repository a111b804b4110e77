"""Which generation backend a run gets: "auto", the vllm/expected-mode rule, tensor parallelism; no model loads."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from selfreward import backends
from selfreward.backends import BACKENDS, resolve_backend
from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.stages import open_generator


@pytest.fixture
def gpu_with_vllm(monkeypatch):
    """A CUDA machine where vLLM is installed, as far as resolve_backend can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm" else real(name, *a))


def test_default_backend_is_auto():
    assert load_config(None).generation.backend == "auto"


def test_vllm_is_registered_lazily():
    assert BACKENDS["vllm"] == "selfreward.backends.vllm:VLLMGenerator"


@pytest.mark.parametrize("name", ["transformers", "vllm", "openai"])
def test_a_named_backend_is_kept(name, gpu_with_vllm):
    assert resolve_backend(name) == name
    assert resolve_backend(name, needs_probs=True) == name


def test_auto_picks_vllm_on_a_gpu_with_vllm(gpu_with_vllm):
    assert resolve_backend("auto") == "vllm"


def test_auto_picks_transformers_when_probabilities_are_needed(gpu_with_vllm):
    assert resolve_backend("auto", needs_probs=True) == "transformers"


def test_auto_picks_transformers_without_cuda(monkeypatch, gpu_with_vllm):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend("auto") == "transformers"


def test_auto_picks_transformers_without_vllm(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real(name, *a))
    assert resolve_backend("auto") == "transformers"


def test_unknown_backend_names_the_choices():
    with pytest.raises(UserError) as e:
        load_config(None, ["generation.backend=vlm"])
    assert str(e.value) == ("defaults: 'generation.backend' must be one of ['auto', 'openai', 'transformers', "
                            "'vllm'], got 'vlm'")


def test_vllm_judge_in_expected_mode_is_refused_at_load():
    with pytest.raises(UserError) as e:
        load_config(None, ["generation.backend=vllm", "judge.mode=expected"])
    assert "judge.mode=expected needs token probabilities, which the vllm backend does not give" in str(e.value)
    with pytest.raises(UserError):
        load_config(None, ["judge.backend=vllm", "judge.mode=expected"])


def test_vllm_generation_with_a_transformers_judge_in_expected_mode_loads():
    cfg = load_config(None, ["generation.backend=vllm", "judge.backend=transformers", "judge.mode=expected"])
    assert (cfg.generation.backend, cfg.judge.backend) == ("vllm", "transformers")


@pytest.mark.parametrize("backend", ["vllm", "auto"])
def test_tensor_parallel_with_vllm_or_auto_loads(backend):
    cfg = load_config(None, [f"generation.backend={backend}", "generation.tensor_parallel_size=2"])
    assert cfg.generation.tensor_parallel_size == 2


def test_tensor_parallel_with_transformers_is_refused_at_load():
    with pytest.raises(UserError) as e:
        load_config(None, ["generation.backend=transformers", "generation.tensor_parallel_size=2"])
    assert "only the vllm backend splits a model over GPUs" in str(e.value)


def test_tensor_parallel_size_must_be_positive():
    with pytest.raises(UserError) as e:
        load_config(None, ["generation.tensor_parallel_size=0"])
    assert str(e.value) == "defaults: 'generation.tensor_parallel_size' must be at least 1, got 0"


def test_tensor_parallel_when_auto_falls_back_to_transformers(monkeypatch):
    """Refused before any model loads (the path does not exist), naming what auto chose and why."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(None, ["generation.tensor_parallel_size=2"])
    with pytest.raises(UserError) as e:
        open_generator(cfg, "/nonexistent/model")
    assert str(e.value) == ("generation.tensor_parallel_size=2 needs the vllm backend, but generation.backend=auto "
                            "chose transformers (vllm needs a CUDA GPU, pip install 'selfreward[vllm]' and "
                            "judge.mode=sample)")


def test_tensor_parallel_does_not_stop_a_named_transformers_judge(monkeypatch):
    """generation on vLLM split over GPUs, the judge on transformers (expected mode): the judge loads as usual, so
    the error is the missing model, not tensor parallelism."""
    from selfreward.stages import judge_view

    cfg = load_config(None, ["generation.backend=vllm", "generation.tensor_parallel_size=2",
                             "judge.backend=transformers", "judge.mode=expected"])
    with pytest.raises(UserError) as e:
        open_generator(judge_view(cfg), "/nonexistent/model")
    assert "tensor_parallel_size" not in str(e.value)
    assert "/nonexistent/model" in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_says_how_to_install():
    with pytest.raises(UserError) as e:
        backends.make_generator("vllm", "/nonexistent/model")
    assert str(e.value).startswith("generation.backend=vllm needs vLLM (No module named 'vllm')")
    assert str(e.value).endswith("install it with pip install 'selfreward[vllm]' on a CUDA machine")
