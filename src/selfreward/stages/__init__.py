"""Stages: each reads artifacts from the run directory and writes its own; the pipeline only sequences them."""

from __future__ import annotations

from selfreward.backends import Generator, make_generator
from selfreward.config import RunConfig
from selfreward.models import resolve_dtype, resolve_model


def open_generator(cfg: RunConfig, model_path: str) -> Generator:
    return make_generator(cfg.generation.backend, model_path, dtype=resolve_dtype(cfg.model.dtype),
                          batch_size=cfg.generation.batch_size, trust_remote_code=cfg.model.trust_remote_code)


def base_model(cfg: RunConfig) -> str:
    return resolve_model(cfg.model)
