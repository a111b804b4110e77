"""One small generation interface; backends are loaded lazily by name.

    generate(requests, sampling, desc) -> list[list[str]]   # sampling.n completions per request, in order
    close()

A request is a list of chat messages; the backend applies the model's chat template. The judge goes through the
same interface, so "the model judges itself" and "another model judges" differ only in configuration.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Protocol

from selfreward.errors import UserError

Message = dict[str, str]

BACKENDS = {
    "transformers": "selfreward.backends.hf:HFGenerator",
    "openai": "selfreward.backends.openai:OpenAIGenerator",
    "vllm": "selfreward.backends.vllm:VLLMGenerator",
}
AUTO = "auto"  # vllm where it pays (a CUDA GPU, vLLM installed), else transformers; see resolve_backend


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


class Generator(Protocol):
    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]: ...

    def close(self) -> None: ...


def resolve_backend(name: str, needs_probs: bool = False) -> str:
    """`name`, or for "auto": vllm on a CUDA machine where vLLM is installed, else transformers. Also transformers
    when token probabilities are needed (judge.mode=expected), which only that backend gives."""
    if name != AUTO:
        return name
    import torch  # here, not at the top: the config check imports this module

    # find_spec, not import: importing vLLM takes seconds and starts nothing we need yet.
    if not needs_probs and torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def make_generator(backend: str, model_path: str, **kwargs) -> Generator:
    if backend not in BACKENDS:
        raise UserError(f"unknown generation backend '{backend}' (generation.backend); "
                        f"choose one of: {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), cls)(model_path, **kwargs)
