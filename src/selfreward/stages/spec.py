"""What a stage is: a declaration (name, the config keys its result depends on, the artifacts it reads and
writes, and `run`), and the context `run` receives.

Artifact patterns are relative to the run directory: {t} is the stage's iteration (for the evaluations, t of the
model M_t), {policy} the directory of M_t, {prev} of M_(t-1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from selfreward.backends import GENERATE, Generator, open_generator
from selfreward.config import ModelConfig, RunConfig
from selfreward.rundir import RunDir


@dataclass(frozen=True)
class StageSpec:
    name: str
    run: Callable[[Context], dict]
    deps: tuple[str, ...]  # config keys or sections; the done-marker records them
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    command: bool = False  # `selfreward NAME RUN_DIR [--iteration T]` re-runs it
    training: bool = False  # runs under `accelerate launch` when accelerate_config is set
    summary: str = ""  # one line for --help


@dataclass
class Context:
    rd: RunDir
    cfg: RunConfig
    t: int
    stage: str = ""
    opener: Callable[..., Generator] = field(default=open_generator)

    def generator(self, model_path: str, role: str = "policy", needs: frozenset[str] = frozenset({GENERATE})):
        """A backend for `model_path` that can do what `needs` names (the context's opener decides which)."""
        return self.opener(self.cfg, model_path, role=role, needs=needs, purpose=f"the {self.stage} stage")

    def model_for(self, override: str | None, t: int | None = None) -> str:
        """M_t (or M_`t`), unless a stage names a model of its own (a fixed prompt writer, an external judge)."""
        if override is None:
            return str(self.rd.policy(self.t if t is None else t))
        from selfreward.models import resolve_model

        return resolve_model(ModelConfig(name=override, cache_dir=self.cfg.model.cache_dir,
                                         trust_remote_code=self.cfg.model.trust_remote_code))
