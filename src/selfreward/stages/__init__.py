"""Stages: each reads artifacts from the run directory and writes its own; the pipeline only sequences them."""

from __future__ import annotations

import dataclasses

from selfreward.backends import AUTO, Generator, make_generator, resolve_backend
from selfreward.config import ModelConfig, RunConfig
from selfreward.errors import UserError
from selfreward.models import resolve_dtype, resolve_model
from selfreward.rundir import RunDir


def open_generator(cfg: RunConfig, model_path: str) -> Generator:
    g = cfg.generation
    backend = resolve_backend(g.backend, needs_probs=cfg.judge.mode == "expected")
    if backend == "openai":  # a server: the model is a name it serves, nothing is loaded here
        return make_generator(backend, model_path, base_url=g.base_url, api_key_env=g.api_key_env,
                              parallel=g.batch_size)
    local = {"dtype": resolve_dtype(cfg.model.dtype), "batch_size": g.batch_size,
             "trust_remote_code": cfg.model.trust_remote_code, "chat_template": cfg.model.chat_template}
    if backend == "vllm":
        return make_generator(backend, model_path, **local, tensor_parallel_size=g.tensor_parallel_size)
    if g.tensor_parallel_size > 1 and g.backend == AUTO:  # a named backend was checked with the config
        raise UserError(f"generation.tensor_parallel_size={g.tensor_parallel_size} needs the vllm backend, but "
                        "generation.backend=auto chose transformers (vllm needs a CUDA GPU, pip install "
                        "'selfreward[vllm]' and judge.mode=sample)")
    return make_generator(backend, model_path, **local)


def judge_view(cfg: RunConfig) -> RunConfig:
    """`cfg` with generation.backend, base_url and api_key_env replaced by the judge's own, where set: open the
    judge with open_generator(judge_view(cfg), judge_model)."""
    g, j = cfg.generation, cfg.judge
    own = dataclasses.replace(g, backend=j.backend or g.backend, base_url=j.base_url or g.base_url,
                              api_key_env=j.api_key_env or g.api_key_env)
    return dataclasses.replace(cfg, generation=own)


def model_for(cfg: RunConfig, rd: RunDir, t: int, override: str | None) -> str:
    """M_t, unless a stage names a model of its own (a fixed prompt writer, an external judge)."""
    if override is None:
        return str(rd.policy(t))
    return resolve_model(ModelConfig(name=override, cache_dir=cfg.model.cache_dir,
                                     trust_remote_code=cfg.model.trust_remote_code))
