"""Run-directory layout, done-markers and the resume rules.

A stage is done when its marker exists. The marker records the config keys the stage depends on and the
marker token of the stage before it, so a later run can tell "finished and still valid" from "finished with
other settings" (refused unless the user asks to redo) and from "its input was recomputed" (redone).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfreward.config import RunConfig, flatten
from selfreward.errors import UserError
from selfreward.records import write_json

# Config keys (or sections) each stage's result depends on. generation.* (backend, batch size) and
# model.cache_dir are left out on purpose: a run may move to other hardware between stages.
_MODEL = ["model.name", "model.dtype", "model.trust_remote_code", "model.chat_template"]
STAGE_DEPS = {
    "sft": _MODEL + ["data.ift", "data.eft_train", "data.max_ift", "data.max_eft", "judge.template", "sft", "seed"],
    "gen-prompts": _MODEL + ["data.ift", "data.max_ift", "gen_prompts", "seed"],
    "sample": _MODEL + ["sample", "seed"],
    "judge": _MODEL + ["judge", "seed"],
    "pairs": [],
    "dpo": _MODEL + ["dpo", "seed"],
}
ITER_STAGES = ["gen-prompts", "sample", "judge", "pairs", "dpo"]


@dataclass(frozen=True)
class Stage:
    name: str
    iteration: int  # 0 for sft

    def __str__(self) -> str:
        return self.name if self.name == "sft" else f"{self.name} (iteration {self.iteration})"


def plan(iterations: int) -> list[Stage]:
    """Every stage of a run, in order."""
    return [Stage("sft", 0)] + [Stage(s, t) for t in range(1, iterations + 1) for s in ITER_STAGES]


def stage_config(cfg: RunConfig, stage: str) -> dict[str, Any]:
    flat = flatten(cfg.to_dict())
    deps = STAGE_DEPS[stage]
    return {k: v for k, v in flat.items() if any(k == d or k.startswith(d + ".") for d in deps)}


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # layout -------------------------------------------------------------------------------------------
    def stage_dir(self, iteration: int) -> Path:
        return self.root / ("sft" if iteration == 0 else f"iter{iteration}")

    def artifact(self, iteration: int, name: str) -> Path:
        return self.stage_dir(iteration) / name

    def policy(self, iteration: int) -> Path:
        """M_t, the model that drives iteration t: M1 is the SFT model, M_{t+1} the DPO output of iteration t."""
        return self.stage_dir(iteration - 1) / "model"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    # markers ------------------------------------------------------------------------------------------
    def _marker(self, stage: Stage) -> Path:
        return self.stage_dir(stage.iteration) / f"{stage.name}.done.json"

    def marker(self, stage: Stage) -> dict[str, Any] | None:
        path = self._marker(stage)
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def mark_done(self, stage: Stage, cfg: RunConfig, previous: Stage | None, stats: dict[str, Any]) -> None:
        prev_marker = self.marker(previous) if previous else None
        write_json(self._marker(stage), {
            "stage": stage.name,
            "iteration": stage.iteration,
            "token": uuid.uuid4().hex,
            "after": prev_marker["token"] if prev_marker else None,
            "config": stage_config(cfg, stage.name),
            "stats": stats,
        })

    def clear(self, stage: Stage) -> None:
        self._marker(stage).unlink(missing_ok=True)

    def state(self, stage: Stage, cfg: RunConfig, previous: Stage | None) -> str:
        """'todo', 'done', 'stale' (its input was recomputed) or 'changed: KEY was A, now B'."""
        marker = self.marker(stage)
        if marker is None:
            return "todo"
        if previous is not None:
            prev = self.marker(previous)
            if prev is None or prev["token"] != marker["after"]:
                return "stale"
        now = stage_config(cfg, stage.name)
        for key in sorted(set(now) | set(marker["config"])):
            if now.get(key) != marker["config"].get(key):
                return f"changed: {key} was {marker['config'].get(key)!r}, now {now.get(key)!r}"
        return "done"


def require_done(rd: RunDir, stage: Stage) -> dict[str, Any]:
    marker = rd.marker(stage)
    if marker is None:
        raise UserError(f"{rd.root}: {stage} has not finished; run it first (selfreward run or selfreward "
                        f"{stage.name} {rd.root}{'' if stage.name == 'sft' else f' --iteration {stage.iteration}'})")
    return marker
