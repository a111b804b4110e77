"""eval.judge and its companions: checked in the config, and changing them redoes only the evaluations."""

from __future__ import annotations

import pytest

from selfreward.compare import eval_judge
from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.rundir import RunDir, plan, stage_config
from selfreward.stages import BY_NAME


def cfg(*overrides):
    return load_config(None, list(overrides))


def test_defaults():
    e = cfg().eval
    assert (e.judge, e.judge_mode, e.margin, e.judge_check_pairs) == (None, "auto", 0.05, 100)


@pytest.mark.parametrize("override, message", [
    ("eval.margin=0.5", "'eval.margin' must be in [0, 0.5), got 0.5"),
    ("eval.margin=-0.01", "'eval.margin' must be in [0, 0.5), got -0.01"),
    ("eval.judge_mode=sample", "'eval.judge_mode' must be one of ['auto', 'forced', 'generated'], got 'sample'"),
    ("eval.judge_check_pairs=-1", "'eval.judge_check_pairs' must be 0 (off) or more, got -1"),
    ("eval.judge=b", "'eval.judge' must name a model (id, directory or .gguf file) or openai:NAME, got 'b'"),
    ("eval.judge='openai:'", "'eval.judge' must name a model"),
    ("eval.judge=' '", "'eval.judge' must name a model"),
])
def test_bad_values(override, message):
    with pytest.raises(UserError) as info:
        cfg(override)
    assert message in str(info.value)


def test_which_judge_evaluates():
    assert eval_judge(cfg()) is None  # the stages' own default: the older model, the model itself
    assert eval_judge(cfg("judge.model=train/judge")) == "train/judge"
    assert eval_judge(cfg("judge.model=served", "judge.backend=openai", "judge.base_url=http://x/v1")) == \
        "openai:served"
    assert eval_judge(cfg("judge.model=train/judge", "eval.judge=/m/q.gguf")) == "/m/q.gguf"


ALL_STAGES = plan(3, judge_eval=True, evals=True, compare=True)


def changed_stages(tmp_path, *overrides) -> set[str]:
    """The stages of a finished run (every stage done under the defaults) that `overrides` would redo."""
    rd, before, after = RunDir(tmp_path), cfg(), cfg(*overrides)
    for stage in ALL_STAGES:
        rd.mark_done(stage, stage_config(before, BY_NAME[stage.name].deps), None, {})
    return {str(s) for s in ALL_STAGES
            if rd.state(s, stage_config(after, BY_NAME[s.name].deps), None).startswith("changed")}


def test_changing_the_evaluation_judge_redoes_only_the_evaluations(tmp_path):
    evals = {str(s) for s in ALL_STAGES if s.name in ("eval", "compare")}
    assert changed_stages(tmp_path, "eval.judge=other/judge") == evals
    assert len(evals) == 4 + 3  # eval of M1..M4, compare of M2..M4
    assert changed_stages(tmp_path / "b", "eval.judge=/models/q.gguf", "eval.judge_mode=generated") == evals


@pytest.mark.parametrize("override", ["eval.margin=0.1", "eval.judge_mode=forced", "eval.judge_check_pairs=0"])
def test_how_verdicts_are_read_redoes_only_the_head_to_heads(tmp_path, override):
    assert changed_stages(tmp_path, override) == {str(s) for s in ALL_STAGES if s.name == "compare"}
