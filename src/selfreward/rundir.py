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
    "gen-prompts": _MODEL + ["data.ift", "data.max_ift", "gen_prompts", "eval.compare_prompts", "seed"],
    "sample": _MODEL + ["sample", "seed"],
    "judge": _MODEL + ["judge", "seed"],
    "pairs": [],
    "dpo": _MODEL + ["dpo", "seed"],
    "eval-judge": _MODEL + ["data.eft_eval", "judge", "judge_eval", "seed"],
    "eval": _MODEL + ["eval", "seed"],
    "compare": _MODEL + ["eval", "judge", "seed"],
}
ITER_STAGES = ["gen-prompts", "sample", "judge", "pairs", "dpo"]
EVAL_JUDGE = "eval-judge"
EVALS = (EVAL_JUDGE, "eval", "compare")  # per model M_t, off the main chain, marked in eval/


@dataclass(frozen=True)
class Stage:
    name: str
    iteration: int  # 0 for sft; for the evals, t of the model M_t evaluated (M0 = the base model)

    def __str__(self) -> str:
        if self.name in EVALS:
            return f"{self.name} (M{self.iteration})"
        return self.name if self.name == "sft" else f"{self.name} (iteration {self.iteration})"


def plan(iterations: int, judge_eval: bool = False, evals: bool = False, compare: bool = False) -> list[Stage]:
    """Every stage of a run, in order. Each model is evaluated once it exists: as a judge (judge_eval), on the
    benchmark suites and held-back prompts (evals; M1 once iteration 1 has written those prompts), and head to
    head against the models before it (compare)."""
    judged = (lambda t: [Stage(EVAL_JUDGE, t)]) if judge_eval else (lambda t: [])
    stages = [Stage("sft", 0)] + judged(0) + judged(1)
    for t in range(1, iterations + 1):
        stages += [Stage("gen-prompts", t)] + ([Stage("eval", 1)] if evals and t == 1 else [])
        stages += [Stage(s, t) for s in ITER_STAGES[1:]] + judged(t + 1)
        stages += ([Stage("eval", t + 1)] if evals else []) + ([Stage("compare", t + 1)] if evals and compare else [])
    return stages


def previous(stage: Stage) -> Stage | None:
    """The stage whose output this one reads. Judge evaluations hang off the chain: redoing one never
    invalidates the loop, and each is redone when the model it evaluates is."""
    t = stage.iteration
    if stage.name == "sft" or stage.name == EVAL_JUDGE and t == 0:
        return None
    if stage.name == "compare":
        return Stage("eval", t)
    if stage.name == "eval" and t == 1:
        return Stage("gen-prompts", 1)  # M1's answers to the held-back prompts are needed by every compare
    if stage.name in ("gen-prompts", EVAL_JUDGE, "eval"):
        return Stage("sft", 0) if t == 1 else Stage("dpo", t - 1)
    return Stage(ITER_STAGES[ITER_STAGES.index(stage.name) - 1], t)


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

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

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
        if stage.name in EVALS:
            short = "judge" if stage.name == EVAL_JUDGE else stage.name
            return self.eval_dir / f"{short}-M{stage.iteration}.done.json"
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
