"""rundir: stage plan, layout, done-markers and the resume rules."""

import dataclasses
import json

import pytest

from selfreward.config import ModelConfig, load_config
from selfreward.errors import UserError
from selfreward.rundir import EVAL_JUDGE, ITER_STAGES, RunDir, Stage, plan, previous, require_done, stage_config


def cfg(*overrides):
    return load_config(None, list(overrides))


def deps(stage: Stage, c) -> dict:
    """The stage's declared dependencies under config `c`, as its marker records them."""
    from selfreward.stages import BY_NAME

    return stage_config(c, BY_NAME[stage.name].deps)


def state(rd: RunDir, stage: Stage, c, prev: Stage | None) -> str:
    return rd.state(stage, deps(stage, c), prev)


def mark(rd: RunDir, stage: Stage, c, prev: Stage | None, stats: dict) -> None:
    rd.mark_done(stage, deps(stage, c), prev, stats)


SFT = Stage("sft", 0)
GEN1 = Stage("gen-prompts", 1)
SAMPLE1 = Stage("sample", 1)
JUDGE1 = Stage("judge", 1)


def test_plan_two_iterations_order():
    assert [(s.name, s.iteration) for s in plan(2)] == [
        ("sft", 0),
        ("gen-prompts", 1), ("sample", 1), ("judge", 1), ("pairs", 1), ("dpo", 1),
        ("gen-prompts", 2), ("sample", 2), ("judge", 2), ("pairs", 2), ("dpo", 2),
    ]


def test_plan_one_iteration():
    assert plan(1) == [SFT, GEN1, SAMPLE1, JUDGE1, Stage("pairs", 1), Stage("dpo", 1)]


def test_stage_str():
    assert str(SFT) == "sft"
    assert str(Stage("judge", 2)) == "judge (iteration 2)"


def test_layout(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.policy(1) == tmp_path / "sft" / "model"
    assert rd.policy(2) == tmp_path / "iter1" / "model"
    assert rd.policy(3) == tmp_path / "iter2" / "model"
    assert rd.stage_dir(0) == tmp_path / "sft"
    assert rd.artifact(2, "pairs.jsonl") == tmp_path / "iter2" / "pairs.jsonl"
    assert rd.config_path == tmp_path / "config.yaml"


def test_todo_then_done(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    assert state(rd, SFT, c, None) == "todo"
    mark(rd, SFT, c, None, {"examples": 3})
    assert state(rd, SFT, c, None) == "done"
    marker = rd.marker(SFT)
    assert marker["stage"] == "sft" and marker["iteration"] == 0
    assert marker["after"] is None
    assert marker["stats"] == {"examples": 3}
    assert (tmp_path / "sft" / "sft.done.json").is_file()
    assert json.loads((tmp_path / "sft" / "sft.done.json").read_text())["token"] == marker["token"]


def test_marker_after_is_previous_token(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, SFT, c, None, {})
    mark(rd, GEN1, c, SFT, {})
    assert rd.marker(GEN1)["after"] == rd.marker(SFT)["token"]
    assert state(rd, GEN1, c, SFT) == "done"
    assert (tmp_path / "iter1" / "gen-prompts.done.json").is_file()


def test_changed_key_the_stage_depends_on(tmp_path):
    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    mark(rd, GEN1, cfg(), SFT, {})
    mark(rd, SAMPLE1, cfg(), GEN1, {})
    now = cfg("sample.temperature=0.9")
    assert state(rd, SAMPLE1, now, GEN1) == "changed: sample.temperature was 0.7, now 0.9"
    assert state(rd, SAMPLE1, now, GEN1).startswith("changed: sample.temperature")
    assert state(rd, SFT, cfg("sft.learning_rate=0.001"), None).startswith("changed: sft.learning_rate")
    assert state(rd, SFT, cfg("seed=5"), None) == "changed: seed was 0, now 5"
    assert state(rd, SFT, cfg("model.name=other/model"), None) == \
        "changed: model.name was 'default', now 'other/model'"


def test_changed_key_added_section(tmp_path):
    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    assert state(rd, SFT, cfg("sft.lora.r=8"), None) == "changed: sft.lora.alpha was None, now 32"


def test_gen_prompts_depends_on_ift_only(tmp_path):
    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    mark(rd, GEN1, cfg(), SFT, {})
    assert state(rd, GEN1, cfg("data.eft_train=/x.jsonl"), SFT) == "done"
    assert state(rd, GEN1, cfg("data.max_ift=5"), SFT) == "changed: data.max_ift was None, now 5"
    assert state(rd, GEN1, cfg("gen_prompts.shots=2"), SFT) == "changed: gen_prompts.shots was 8, now 2"


@pytest.mark.parametrize("override", ["generation.batch_size=2", "generation.backend=vllm", "dpo.beta=0.5",
                                      "judge.k=5", "iterations=3", "gen_prompts.shots=2"])
def test_change_in_a_key_not_depended_on_is_still_done(tmp_path, override):
    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    mark(rd, GEN1, cfg(), SFT, {})
    mark(rd, SAMPLE1, cfg(), GEN1, {})
    assert state(rd, SAMPLE1, cfg(override), GEN1) == "done"


def test_generation_settings_never_change_sft(tmp_path):
    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    assert state(rd, SFT, cfg("generation.batch_size=1"), None) == "done"
    assert state(rd, SFT, cfg("dpo.beta=0.5", "sample.n=8"), None) == "done"


def test_sft_depends_on_judge_template(tmp_path):
    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    assert state(rd, SFT, cfg("judge.template=/my/judge.txt"), None).startswith("changed: judge.template")


def test_remarking_previous_makes_next_stale(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, SFT, c, None, {})
    mark(rd, GEN1, c, SFT, {})
    mark(rd, SAMPLE1, c, GEN1, {})
    mark(rd, SFT, c, None, {})  # SFT recomputed
    assert state(rd, SFT, c, None) == "done"
    assert state(rd, GEN1, c, SFT) == "stale"
    assert state(rd, SAMPLE1, c, GEN1) == "done"  # its own input (gen-prompts) is unchanged so far
    mark(rd, GEN1, c, SFT, {})
    assert state(rd, GEN1, c, SFT) == "done"
    assert state(rd, SAMPLE1, c, GEN1) == "stale"


def test_missing_previous_marker_is_stale(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, SFT, c, None, {})
    mark(rd, GEN1, c, SFT, {})
    rd.clear(SFT)
    assert state(rd, SFT, c, None) == "todo"
    assert state(rd, GEN1, c, SFT) == "stale"


def test_stale_wins_over_changed(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, SFT, c, None, {})
    mark(rd, GEN1, c, SFT, {})
    mark(rd, SFT, c, None, {})
    assert state(rd, GEN1, cfg("gen_prompts.shots=2"), SFT) == "stale"


def test_clear(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, SFT, c, None, {})
    rd.clear(SFT)
    assert rd.marker(SFT) is None
    rd.clear(SFT)  # clearing twice is fine


def test_require_done(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    with pytest.raises(UserError) as e:
        require_done(rd, JUDGE1)
    assert str(e.value) == (f"{tmp_path}: judge (iteration 1) has not finished; run it first (selfreward run or "
                            f"selfreward judge {tmp_path} --iteration 1)")
    with pytest.raises(UserError) as e:
        require_done(rd, SFT)
    assert str(e.value) == (f"{tmp_path}: sft has not finished; run it first (selfreward run or selfreward sft "
                            f"{tmp_path})")
    mark(rd, SFT, c, None, {"x": 1})
    assert require_done(rd, SFT)["stats"] == {"x": 1}


def test_stage_config_keys():
    c = cfg()
    # model.cache_dir is left out: moving the cache must not invalidate a run; model.name reaches sample through
    # the token chain (M_t), and the stage never reads it
    model_keys = {f"model.{f.name}" for f in dataclasses.fields(ModelConfig)} - {"model.cache_dir", "model.name"}
    assert set(deps(Stage("sample", 1), c)) == model_keys | {"sample.n", "sample.temperature", "sample.top_p",
                                                           "sample.max_new_tokens", "sample.require_eos", "seed"}
    assert deps(Stage("sample", 1), c)["sample.n"] == 4
    # pairs reads only the judgments: its own settings and the reward's, never sampling or judging settings
    assert all(k.startswith(("pairs.", "reward.")) for k in deps(Stage("pairs", 1), c))
    gen = deps(Stage("gen-prompts", 1), c)
    assert {k for k in gen if k.startswith("data.")} == {"data.ift", "data.max_ift"}
    assert {k for k in deps(Stage("sft", 1), c) if k.startswith("data.")} == {
        "data.ift", "data.eft_train", "data.max_ift", "data.max_eft"}
    assert not any(k.startswith("generation.") for s in ("sft", "gen-prompts", "sample", "judge", "dpo")
                   for k in deps(Stage(s, 1), c))


# --- judge evaluation: eval-judge (M_t) hangs off the chain -----------------------------------------------------

def EJ(t):
    return Stage(EVAL_JUDGE, t)


def test_plan_with_judge_eval_order():
    assert [(s.name, s.iteration) for s in plan(2, judge_eval=True)] == [
        ("sft", 0), ("eval-judge", 0), ("eval-judge", 1),
        ("gen-prompts", 1), ("sample", 1), ("judge", 1), ("pairs", 1), ("dpo", 1), ("eval-judge", 2),
        ("gen-prompts", 2), ("sample", 2), ("judge", 2), ("pairs", 2), ("dpo", 2), ("eval-judge", 3),
    ]
    # without it, the plan is the loop alone
    assert plan(2, judge_eval=False) == plan(2) == [s for s in plan(2, judge_eval=True) if s.name != EVAL_JUDGE]


def test_previous_of_every_stage_kind():
    assert [(str(s), previous(s)) for s in plan(2, judge_eval=True)] == [
        ("sft", None),
        ("eval-judge (M0)", None),  # the base model needs nothing from the run
        ("eval-judge (M1)", SFT),
        ("gen-prompts (iteration 1)", SFT),  # the loop reads SFT, never an evaluation
        ("sample (iteration 1)", GEN1),
        ("judge (iteration 1)", SAMPLE1),
        ("pairs (iteration 1)", JUDGE1),
        ("dpo (iteration 1)", Stage("pairs", 1)),
        ("eval-judge (M2)", Stage("dpo", 1)),
        ("gen-prompts (iteration 2)", Stage("dpo", 1)),
        ("sample (iteration 2)", Stage("gen-prompts", 2)),
        ("judge (iteration 2)", Stage("sample", 2)),
        ("pairs (iteration 2)", Stage("judge", 2)),
        ("dpo (iteration 2)", Stage("pairs", 2)),
        ("eval-judge (M3)", Stage("dpo", 2)),
    ]
    # nothing reads an evaluation
    assert all(previous(s) is None or previous(s).name != EVAL_JUDGE for s in plan(3, judge_eval=True))


def test_pipeline_plan_follows_judge_eval_max_prompts():
    from selfreward.pipeline import run_plan

    assert EJ(0) in run_plan(cfg()) and EJ(3) in run_plan(cfg())  # default: every prompt
    assert EJ(3) in run_plan(cfg("judge_eval.max_prompts=2"))
    assert run_plan(cfg("judge_eval.max_prompts=0", "eval.suites=[]", "eval.compare_prompts=0")) == plan(2)


# --- benchmark evaluation (eval) and head to head (compare) -----------------------------------------------------

def test_plan_with_evals_and_compare():
    names = [str(s) for s in plan(3, evals=True, compare=True)]
    assert names == [
        "sft", "gen-prompts (iteration 1)", "eval (M1)",  # M1 answers the held-back prompts iteration 1 wrote
        "sample (iteration 1)", "judge (iteration 1)", "pairs (iteration 1)", "dpo (iteration 1)",
        "eval (M2)", "compare (M2)",
        "gen-prompts (iteration 2)", "sample (iteration 2)", "judge (iteration 2)", "pairs (iteration 2)",
        "dpo (iteration 2)", "eval (M3)", "compare (M3)",
        "gen-prompts (iteration 3)", "sample (iteration 3)", "judge (iteration 3)", "pairs (iteration 3)",
        "dpo (iteration 3)", "eval (M4)", "compare (M4)",
    ]
    assert [s for s in plan(2, evals=True) if s.name == "compare"] == []


def test_previous_of_evals_and_compare():
    assert previous(Stage("eval", 1)) == GEN1
    assert previous(Stage("eval", 2)) == Stage("dpo", 1)
    assert previous(Stage("compare", 3)) == Stage("eval", 3)
    # the loop never reads an evaluation
    loop = [s for s in plan(3, judge_eval=True, evals=True, compare=True) if s.name in ITER_STAGES]
    assert all(previous(s).name not in ("eval", "compare", EVAL_JUDGE) for s in loop)


def test_pipeline_plan_follows_eval_config():
    from selfreward.pipeline import run_plan

    off = ["judge_eval.max_prompts=0"]
    assert Stage("compare", 2) in run_plan(cfg(*off))  # default: ifeval and the head-to-head
    assert Stage("eval", 2) in run_plan(cfg(*off, "eval.compare_prompts=0"))
    assert Stage("compare", 2) not in run_plan(cfg(*off, "eval.compare_prompts=0"))
    assert Stage("eval", 2) in run_plan(cfg(*off, "eval.suites=[]"))  # answers for the head-to-head


def test_eval_and_compare_markers_live_in_eval_dir(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, Stage("eval", 2), c, Stage("dpo", 1), {})
    mark(rd, Stage("compare", 2), c, Stage("eval", 2), {})
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["compare-M2.done.json", "eval-M2.done.json"]
    assert state(rd, Stage("compare", 2), c, Stage("eval", 2)) == "done"
    # the answers' length belongs to eval (compare reads its answers, so it is redone after it, by the token chain)
    assert state(rd, Stage("eval", 2), cfg("eval.max_new_tokens=64"), None).startswith("changed")
    assert state(rd, Stage("compare", 2), cfg("eval.max_new_tokens=64"), Stage("eval", 2)) == "done"
    assert state(rd, Stage("compare", 2), cfg("judge.max_new_tokens=64"), Stage("eval", 2)).startswith("changed")


def test_eval_depends_on_the_judge_that_grades_its_suites(tmp_path):
    """Regression: eval reads judge.model and judge.max_new_tokens (MT-Bench, Vicuna, AlpacaEval grading), and its
    hand-kept dependency list had neither, so old grades counted as done after the judge changed."""
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, Stage("eval", 2), c, None, {})
    assert state(rd, Stage("eval", 2), cfg("judge.model=other/judge"), None).startswith("changed: judge.model")
    assert state(rd, Stage("eval", 2), cfg("judge.max_new_tokens=64"), None).startswith("changed: judge.max_new")


@pytest.mark.parametrize("override", ["judge.mode=expected", "judge.k=5", "judge.template=/my/judge.txt",
                                      "judge.temperature=0.2", "eval.suites=[]", "eval.max_prompts=3"])
def test_compare_ignores_judge_settings_it_does_not_read(tmp_path, override):
    """Regression: compare depended on every judge.* key (mode, k, template), none of which it reads, so changing
    them redid every head-to-head for nothing."""
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, Stage("compare", 2), c, None, {})
    assert state(rd, Stage("compare", 2), cfg(override), None) == "done"


def test_eval_judge_marker_layout(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, EJ(0), c, None, {"pairwise_accuracy": 0.5})
    assert (tmp_path / "eval" / "judge-M0.done.json").is_file()
    assert rd.eval_dir == tmp_path / "eval"
    marker = rd.marker(EJ(0))
    assert (marker["stage"], marker["iteration"], marker["after"]) == ("eval-judge", 0, None)
    assert state(rd, EJ(0), c, None) == "done"


def test_redoing_an_evaluation_leaves_the_chain_done(tmp_path):
    rd, c = RunDir(tmp_path), cfg()
    mark(rd, SFT, c, None, {})
    mark(rd, EJ(1), c, SFT, {})
    mark(rd, GEN1, c, previous(GEN1), {})
    first = rd.marker(EJ(1))["token"]
    mark(rd, EJ(1), c, previous(EJ(1)), {})  # eval-judge (M1) redone
    assert rd.marker(EJ(1))["token"] != first
    assert state(rd, EJ(1), c, previous(EJ(1))) == "done"
    assert state(rd, GEN1, c, previous(GEN1)) == "done"
    # and an evaluation goes stale when the model it evaluates is recomputed
    mark(rd, SFT, c, None, {})
    assert state(rd, EJ(1), c, previous(EJ(1))) == "stale"


def test_eval_judge_config_keys(tmp_path):
    c = cfg()
    keys = set(deps(Stage(EVAL_JUDGE, 1), c))
    assert {"data.eft_eval", "judge.mode", "judge.k", "judge.template", "judge_eval.max_prompts", "seed",
            "model.name"} <= keys
    assert not any(k.startswith(("data.eft_train", "data.ift", "sft.", "dpo.", "sample.", "generation."))
                   for k in keys)
    # an evaluation setting changes the evaluations only, never a stage of the loop
    rd = RunDir(tmp_path)
    mark(rd, SFT, c, None, {})
    mark(rd, EJ(1), c, SFT, {})
    mark(rd, GEN1, c, SFT, {})
    other = cfg("judge_eval.max_prompts=5")
    assert state(rd, EJ(1), other, SFT) == "changed: judge_eval.max_prompts was None, now 5"
    assert state(rd, SFT, other, None) == "done" and state(rd, GEN1, other, SFT) == "done"
    assert state(rd, EJ(1), cfg("data.eft_eval=/x.jsonl"), SFT).startswith("changed: data.eft_eval")
    assert state(rd, EJ(1), cfg("judge.mode=expected"), SFT) == "changed: judge.mode was 'sample', now 'expected'"


def test_eval_judge_stage_str():
    assert str(EJ(0)) == "eval-judge (M0)"
    assert str(EJ(3)) == "eval-judge (M3)"


def _drop_from_marker(rd: RunDir, stage: Stage, key: str) -> None:
    """The marker as an older selfreward wrote it, before `key` existed."""
    path = rd.stage_dir(stage.iteration) / f"{stage.name}.done.json"
    marker = json.loads(path.read_text())
    del marker["config"][key]
    path.write_text(json.dumps(marker))


def test_key_added_after_the_stage_ran_counts_as_its_default(tmp_path):
    from selfreward import pipeline

    rd = RunDir(tmp_path)
    mark(rd, SFT, cfg(), None, {})
    _drop_from_marker(rd, SFT, "sft.optim")
    assert pipeline.state(rd, cfg(), SFT) == "done"
    assert pipeline.state(rd, cfg("sft.optim=adafactor"), SFT) == \
        "changed: sft.optim was 'adamw_torch_fused', now 'adafactor'"
    # without the defaults (as before): the missing key is a change
    assert state(rd, SFT, cfg(), None) == "changed: sft.optim was None, now 'adamw_torch_fused'"
