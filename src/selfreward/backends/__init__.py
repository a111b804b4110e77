"""One generation interface; backends are loaded lazily by name and state what they can do.

    generate(requests, sampling, desc) -> list[list[str]]      sampling.n completions per request, in order
    complete(requests, sampling, desc)                          the same as Completion(text, finished): finished is
        -> list[list[Completion]]                               False for a text cut off at max_new_tokens; a text
                                                                ends right after the first of sampling.stop it writes
    option_probs(requests, prefixes, options, desc)             P(option | request + the assistant's prefix), each
        -> list[list[float]]                                    option one token there (forced choice, digits)
    logprobs(requests, continuations, desc) -> list[LogProb]    summed token log-probs of each continuation as the
                                                                assistant's reply to its request, and its tokens
    close()

A request is a list of chat messages; the backend applies the model's chat template, with message contents
tokenized as plain text (special-token text inside them never becomes structure). The judge goes through the same
interface, so "the model judges itself" and "another model judges" differ only in configuration.

Each backend declares its capabilities in CAPABILITIES; `open_generator` refuses, before loading anything, a
backend that lacks what the caller needs, with one line naming a backend that has it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from selfreward.config import AUTO, RunConfig
from selfreward.errors import UserError

Message = dict[str, str]

GENERATE, OPTION_PROBS, LOGPROBS = "generate", "option_probs", "logprobs"
_WHAT = {GENERATE: "completions", OPTION_PROBS: "next-token option probabilities",
         LOGPROBS: "log-probabilities of a given continuation"}

BACKENDS = {
    "transformers": "selfreward.backends.hf:HFGenerator",
    "openai": "selfreward.backends.openai:OpenAIGenerator",
    "vllm": "selfreward.backends.vllm:VLLMGenerator",
    "fake": "selfreward.backends.fake:FakeGenerator",
}
CAPABILITIES = {
    "transformers": frozenset({GENERATE, OPTION_PROBS, LOGPROBS}),
    "openai": frozenset({GENERATE}),
    "vllm": frozenset({GENERATE}),
    "fake": frozenset({GENERATE, OPTION_PROBS, LOGPROBS}),
}


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    # Stop strings: a completion ends as soon as its text holds one of them, right after the first that appears
    # (`stop_end`); the stop string stays in the text, and the completion counts as finished.
    stop: tuple[str, ...] = ()


def stop_end(text: str, stop: tuple[str, ...] | list[str]) -> int | None:
    """Where a completion with these stop strings ends: just after the stop string that is complete first in
    `text` (the earliest end of a first occurrence); None when none occurs."""
    ends = [i + len(s) for s in stop if s and (i := text.find(s)) >= 0]
    return min(ends) if ends else None


class Completion(NamedTuple):
    text: str
    finished: bool  # the model ended it (end of sequence or a stop string); False when max_new_tokens cut it off


class LogProb(NamedTuple):
    total: float  # the sum of the continuation's token log-probabilities (natural log)
    tokens: int


class Generator(Protocol):
    capabilities: frozenset[str]

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]: ...

    def complete(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[Completion]]: ...

    def option_probs(self, requests: list[list[Message]], prefixes: list[str], options: list[str],
                     desc: str = "") -> list[list[float]]: ...

    def logprobs(self, requests: list[list[Message]], continuations: list[str], desc: str = "") -> list[LogProb]: ...

    def close(self) -> None: ...


def texts(completions: list[list[Completion]]) -> list[list[str]]:
    return [[c.text for c in row] for row in completions]


def require(backend: str, needs: frozenset[str] | set[str], purpose: str) -> None:
    """One line when `backend` cannot do what `purpose` needs, naming the backends that can."""
    missing = sorted(set(needs) - CAPABILITIES[backend])
    if missing:
        able = [b for b, caps in CAPABILITIES.items() if set(needs) <= caps and b != "fake"]
        raise UserError(f"{purpose} needs {', '.join(_WHAT[m] for m in missing)}, which the {backend} backend does "
                        f"not give; use the {' or '.join(able)} backend for it")


def unsupported(backend: str, capability: str) -> UserError:
    able = [b for b, caps in CAPABILITIES.items() if capability in caps and b != "fake"]
    return UserError(f"the {backend} backend does not give {_WHAT[capability]}; use the {' or '.join(able)} backend")


def resolve_backend(name: str, needs: frozenset[str] = frozenset({GENERATE})) -> str:
    """`name`, or for "auto": vllm on a CUDA machine where vLLM is installed and can do what is needed, else
    transformers."""
    if name != AUTO:
        return name
    import torch  # here, not at the top: config checks and unit tests import this module

    # find_spec, not import: importing vLLM takes seconds and starts nothing we need yet.
    if needs <= CAPABILITIES["vllm"] and torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def role_backend(cfg: RunConfig, role: str) -> tuple[str, str | None, str]:
    """(backend, base_url, api_key_env) of a role: "policy" (the model being trained, and any model it stands
    beside) or "judge" (the model that judges in the loop: judge.model, or M_t judging itself). judge.backend,
    judge.base_url and judge.api_key_env override the generation.* ones for the judge."""
    g, j = cfg.generation, cfg.judge
    if role == "judge":
        return j.backend or g.backend, j.base_url or g.base_url, j.api_key_env or g.api_key_env
    return g.backend, g.base_url, g.api_key_env


def open_generator(cfg: RunConfig, model_path: str, role: str = "policy",
                   needs: frozenset[str] = frozenset({GENERATE}), purpose: str = "this stage") -> Generator:
    name, base_url, api_key_env = role_backend(cfg, role)
    backend = resolve_backend(name, needs)
    require(backend, needs, purpose)
    g = cfg.generation
    if backend == "openai":  # a server: the model is a name it serves, nothing is loaded here
        return make_generator(backend, model_path, base_url=base_url, api_key_env=api_key_env, parallel=g.batch_size)
    if backend == "fake":
        return make_generator(backend, model_path)
    from selfreward.models import resolve_dtype

    local = {"dtype": resolve_dtype(cfg.model.dtype), "batch_size": g.batch_size,
             "trust_remote_code": cfg.model.trust_remote_code, "chat_template": cfg.model.chat_template}
    if backend == "vllm":
        return make_generator(backend, model_path, **local, tensor_parallel_size=g.tensor_parallel_size)
    if g.tensor_parallel_size > 1 and name == AUTO:  # a named backend was checked with the config
        raise UserError(f"generation.tensor_parallel_size={g.tensor_parallel_size} needs the vllm backend, but "
                        "generation.backend=auto chose transformers (vllm needs a CUDA GPU, pip install "
                        "'selfreward[vllm]', and a stage that needs completions only)")
    return make_generator(backend, model_path, **local)


def make_generator(backend: str, model_path: str, **kwargs) -> Generator:
    if backend not in BACKENDS:
        raise UserError(f"unknown generation backend '{backend}' (generation.backend); "
                        f"choose one of: {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), cls)(model_path, **kwargs)
