from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch a model or data hub: anything that tries fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Where the default model is converted: the user's cache if it already holds it, else a session tmp dir."""
    user = Path(os.environ.get("SELFREWARD_CACHE", "~/.cache/selfreward")).expanduser()
    if (user / "SmolLM2-135M-Instruct" / "model.safetensors").is_file():
        return user
    return tmp_path_factory.mktemp("selfreward-cache")


@pytest.fixture
def no_proxy(monkeypatch):
    """The loopback stub server must be reached directly, whatever proxy the environment names."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
