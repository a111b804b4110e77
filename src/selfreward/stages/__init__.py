"""Stages: each reads artifacts from the run directory and writes its own; the pipeline only sequences them."""

from __future__ import annotations

from selfreward.backends import Generator, make_generator
from selfreward.config import ModelConfig, RunConfig
from selfreward.models import resolve_dtype, resolve_model
from selfreward.rundir import RunDir


def open_generator(cfg: RunConfig, model_path: str) -> Generator:
    return make_generator(cfg.generation.backend, model_path, dtype=resolve_dtype(cfg.model.dtype),
                          batch_size=cfg.generation.batch_size, trust_remote_code=cfg.model.trust_remote_code)


def model_for(cfg: RunConfig, rd: RunDir, t: int, override: str | None) -> str:
    """M_t, unless a stage names a model of its own (a fixed prompt writer, an external judge)."""
    if override is None:
        return str(rd.policy(t))
    return resolve_model(ModelConfig(name=override, cache_dir=cfg.model.cache_dir,
                                     trust_remote_code=cfg.model.trust_remote_code))
