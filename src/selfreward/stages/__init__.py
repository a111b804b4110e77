"""The stages, each declared once in its own module (`STAGE`: name, dependencies, artifacts, run).

The driver's stage table, the stage commands of the CLI and the done-markers' dependency lists are all read from
ALL; adding a stage means writing its module and listing it here.
"""

from __future__ import annotations

from selfreward.stages import compare, dpo, eval_judge, evaluate, gen_prompts, judge, meta_judge, pairs, sample, sft
from selfreward.stages.spec import Context, StageSpec

ALL: tuple[StageSpec, ...] = (sft.STAGE, gen_prompts.STAGE, sample.STAGE, judge.STAGE, meta_judge.STAGE, pairs.STAGE,
                              dpo.STAGE, eval_judge.STAGE, evaluate.STAGE, compare.STAGE)
BY_NAME = {s.name: s for s in ALL}
COMMANDS = [s for s in ALL if s.command]

__all__ = ["ALL", "BY_NAME", "COMMANDS", "Context", "StageSpec"]
