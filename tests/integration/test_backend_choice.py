"""Which generation backend a stage gets: "auto" by what the stage needs, capabilities, tensor parallelism; no model
loads. (Here rather than in the unit tier: it switches torch.cuda.is_available.)"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from selfreward import backends
from selfreward.backends import BACKENDS, CAPABILITIES, GENERATE, OPTION_PROBS, open_generator, require, resolve_backend
from selfreward.config import BACKEND_NAMES, JudgeConfig, load_config
from selfreward.errors import UserError
from selfreward.judges.scorers import needs

PROBS = frozenset({GENERATE, OPTION_PROBS})


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


def test_every_config_name_is_a_registered_backend_with_capabilities():
    assert set(BACKEND_NAMES) == set(BACKENDS) | {"auto"} and set(CAPABILITIES) == set(BACKENDS)


def test_each_backend_class_states_the_capabilities_of_the_registry():
    import importlib

    for name, where in BACKENDS.items():
        module, _, cls = where.partition(":")
        assert getattr(importlib.import_module(module), cls).capabilities == CAPABILITIES[name]


@pytest.mark.parametrize("name", ["transformers", "vllm", "openai"])
def test_a_named_backend_is_kept(name, gpu_with_vllm):
    assert resolve_backend(name) == name
    assert resolve_backend(name, PROBS) == name


def test_auto_picks_vllm_on_a_gpu_with_vllm(gpu_with_vllm):
    assert resolve_backend("auto") == "vllm"


def test_auto_picks_transformers_when_probabilities_are_needed(gpu_with_vllm):
    assert resolve_backend("auto", PROBS) == "transformers"


def test_a_stage_that_only_generates_gets_vllm_while_the_expected_judge_gets_transformers(gpu_with_vllm):
    """Before, judge.mode=expected picked transformers for every stage, sampling included."""
    assert resolve_backend("auto", needs(JudgeConfig(mode="sample"))) == "vllm"
    assert resolve_backend("auto", needs(JudgeConfig(mode="expected"))) == "transformers"


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
    assert str(e.value) == ("defaults: 'generation.backend' must be one of ['auto', 'fake', 'openai', "
                            "'transformers', 'vllm'], got 'vlm'")


@pytest.mark.parametrize("backend", ["vllm", "openai"])
def test_a_backend_without_probabilities_is_refused_for_the_expected_judge(backend):
    with pytest.raises(UserError) as e:
        require(backend, needs(JudgeConfig(mode="expected")), "judge.mode=expected")
    assert str(e.value) == (f"judge.mode=expected needs next-token option probabilities, which the {backend} backend "
                            "does not give; use the transformers backend for it")


def test_the_refusal_comes_before_any_model_loads():
    cfg = load_config(None, ["judge.backend=vllm", "judge.mode=expected"])
    with pytest.raises(UserError) as e:
        open_generator(cfg, "/nonexistent/model", role="judge", needs=needs(cfg.judge), purpose="judge.mode=expected")
    assert "which the vllm backend does not give" in str(e.value)


def test_missing_capability_at_call_time_is_one_clear_error():
    from selfreward.backends.openai import OpenAIGenerator

    gen = OpenAIGenerator("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(UserError) as e:
        gen.logprobs([[{"role": "user", "content": "x"}]], ["y"])
    assert str(e.value) == ("the openai backend does not give log-probabilities of a given continuation; use the "
                            "transformers backend")


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
                            "chose transformers (vllm needs a CUDA GPU, pip install 'selfreward[vllm]', and a stage "
                            "that needs completions only)")


def test_tensor_parallel_does_not_stop_a_named_transformers_judge(monkeypatch):
    """generation on vLLM split over GPUs, the judge on transformers (expected mode): the judge loads as usual, so
    the error is the missing model, not tensor parallelism."""
    cfg = load_config(None, ["generation.backend=vllm", "generation.tensor_parallel_size=2",
                             "judge.backend=transformers", "judge.mode=expected"])
    with pytest.raises(UserError) as e:
        open_generator(cfg, "/nonexistent/model", role="judge", needs=needs(cfg.judge))
    assert "tensor_parallel_size" not in str(e.value)
    assert "/nonexistent/model" in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_says_how_to_install():
    with pytest.raises(UserError) as e:
        backends.make_generator("vllm", "/nonexistent/model")
    assert str(e.value).startswith("generation.backend=vllm needs vLLM (No module named 'vllm')")
    assert str(e.value).endswith("install it with pip install 'selfreward[vllm]' on a CUDA machine")
