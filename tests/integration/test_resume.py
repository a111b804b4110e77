"""Resume: finished stages are skipped, a crashed stage is redone with everything after it, changed settings are
refused unless --redo, and a real SIGKILL mid-stage leaves a run directory that the next run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from integration_helpers import (
    SELFREWARD_BIN,
    all_stage_keys,
    clear_fake_calls,
    eval_keys,
    fake_calls,
    run_cfg,
    run_overrides,
    tokens,
)


def resume(run_dir: Path, cfg, redo: bool = False) -> None:
    """What `selfreward run` does, minus the input checks and the summary."""
    from selfreward import pipeline
    from selfreward.rundir import RunDir

    rd = RunDir(run_dir)
    pipeline.check_changes(rd, cfg, redo)
    pipeline.prepare(rd, cfg, ["selfreward", "run", "(test)"])
    pipeline.run_all(rd, cfg)


def split(before: dict, after: dict) -> tuple[list[str], list[str]]:
    """(unchanged keys, changed keys), in plan order."""
    keys = [k for k in all_stage_keys(2) if k in before]
    return [k for k in keys if before[k] == after.get(k)], [k for k in keys if before[k] != after.get(k)]


def test_rerun_of_a_finished_run_recomputes_nothing(run_copy, tiny_model_dir, capsys):
    before = tokens(run_copy)
    mtimes = {p: p.stat().st_mtime_ns for p in run_copy.rglob("*.jsonl")}
    resume(run_copy, run_cfg(run_copy))
    assert tokens(run_copy) == before
    assert {p: p.stat().st_mtime_ns for p in run_copy.rglob("*.jsonl")} == mtimes
    out = capsys.readouterr().out
    # 11 stages of the loop, eval-judge of M0..M3, eval of M1..M3, compare of M2 and M3
    assert out.count("[skip]") == 20 and "[run ]" not in out


def test_crash_in_iteration_2_sample_redoes_only_from_there(run_copy, tiny_model_dir):
    before = tokens(run_copy)
    old_candidates = (run_copy / "iter2" / "candidates.jsonl").read_text()
    # a crash in the middle of iter2 sample: its marker was cleared when it started, half a temp file is left
    (run_copy / "iter2" / "sample.done.json").unlink()
    (run_copy / "iter2" / "candidates.jsonl.tmp").write_text('{"id": 0, "prompt_id": 0, "prom')
    resume(run_copy, run_cfg(run_copy))
    after = tokens(run_copy)
    assert sorted(after) == sorted(before)
    unchanged, changed = split(before, after)
    assert changed == ["iter2/sample", "iter2/judge", "iter2/pairs", "iter2/dpo"]
    assert unchanged == all_stage_keys(2)[:-4]
    assert not (run_copy / "iter2" / "candidates.jsonl.tmp").exists()
    # same model, same seed: the redone stage reproduces the candidates
    assert (run_copy / "iter2" / "candidates.jsonl").read_text() == old_candidates
    # the chain is consistent again
    assert json.loads((run_copy / "iter2" / "judge.done.json").read_text())["after"] == after["iter2/sample"]
    # of the evaluations, only M3's model was recomputed
    assert [k for k in eval_keys(2) if after[k] != before[k]] == ["eval/judge-M3", "eval/eval-M3", "eval/compare-M3"]


def test_changed_setting_is_refused_then_redone_with_redo(run_copy, tiny_model_dir):
    from selfreward import pipeline
    from selfreward.errors import UserError
    from selfreward.rundir import RunDir

    rd = RunDir(run_copy)
    before = tokens(run_copy)
    hotter = run_cfg(run_copy, "sample.temperature=0.9")
    with pytest.raises(UserError) as e:
        pipeline.check_changes(rd, hotter, redo=False)
    msg = str(e.value)
    assert msg.startswith("sample (iteration 1) already finished with other settings "
                          "(sample.temperature was 0.7, now 0.9)")
    assert "--redo" in msg
    assert tokens(run_copy) == before  # refused before anything was touched

    resume(run_copy, hotter, redo=True)
    after = tokens(run_copy)
    unchanged, changed = split(before, after)
    assert unchanged == ["sft/sft", "iter1/gen-prompts"]
    assert changed == all_stage_keys(2)[2:]
    marker = json.loads((run_copy / "iter1" / "sample.done.json").read_text())
    assert marker["config"]["sample.temperature"] == 0.9

    # generation.* is hardware, not a result: another batch size is accepted and recomputes nothing
    bigger = run_cfg(run_copy, "generation.batch_size=5")
    pipeline.check_changes(rd, bigger, redo=False)
    resume(run_copy, bigger)
    assert tokens(run_copy) == after


def test_single_stage_command_makes_later_stages_stale(run_copy, capsys):
    from selfreward import cli

    before = tokens(run_copy)
    assert cli.main(["sample", str(run_copy), "-t", "3"]) == 2
    assert "--iteration must be between 1 and 2" in capsys.readouterr().err
    assert cli.main(["pairs", str(run_copy), "-t", "2"]) == 0
    assert tokens(run_copy)["iter2/pairs"] != before["iter2/pairs"]
    capsys.readouterr()
    assert cli.main(["status", str(run_copy)]) == 0
    status = {line[:28].strip(): line[28:].strip() for line in capsys.readouterr().out.splitlines()[:20]}
    assert status["pairs (iteration 2)"] == "done" and status["dpo (iteration 2)"] == "stale"
    assert [k for k, v in status.items() if v != "done"] == ["dpo (iteration 2)"]

    resume(run_copy, run_cfg(run_copy))
    unchanged, changed = split(before, tokens(run_copy))
    assert changed == ["iter2/pairs", "iter2/dpo"]


def test_redoing_an_eval_judge_stage_leaves_the_loop_done(run_copy, capsys):
    """eval-judge hangs off the chain (rundir.previous): redoing one, or changing only judge_eval settings,
    never makes a stage of the loop stale or changed."""
    from selfreward import pipeline
    from selfreward.errors import UserError
    from selfreward.rundir import EVAL_JUDGE, RunDir, Stage

    rd = RunDir(run_copy)
    cfg = run_cfg(run_copy)
    before = tokens(run_copy)
    clear_fake_calls()
    pipeline.execute(rd, cfg, Stage(EVAL_JUDGE, 1))
    assert [(c["desc"], c["model"]) for c in fake_calls()] == [("eval-judge M1", str(run_copy / "sft" / "model"))]
    after = tokens(run_copy)
    assert [k for k in before if before[k] != after[k]] == ["eval/judge-M1"]
    assert {str(s): pipeline.state(rd, cfg, s) for s in pipeline.run_plan(cfg)} == \
        {str(s): "done" for s in pipeline.run_plan(cfg)}
    capsys.readouterr()
    resume(run_copy, cfg)
    out = capsys.readouterr().out
    assert out.count("[skip]") == 20 and "[run ]" not in out
    assert tokens(run_copy) == after

    # another judge_eval setting: the evaluations are refused, then redone with --redo; the loop is untouched
    fewer = run_cfg(run_copy, "judge_eval.max_prompts=1")
    with pytest.raises(UserError, match=r"^eval-judge \(M0\) already finished with other settings "
                                        r"\(judge_eval.max_prompts was 2, now 1\)"):
        pipeline.check_changes(rd, fewer, redo=False)
    resume(run_copy, fewer, redo=True)
    redone = tokens(run_copy)
    assert [k for k in after if after[k] != redone[k]] == [f"eval/judge-M{t}" for t in range(4)]
    assert rd.marker(Stage(EVAL_JUDGE, 3))["stats"]["prompts"] == 1


def test_changed_judge_template_invalidates_sft(run_copy, tmp_path):
    """sft renders every EFT training example with the judge template, so M1 depends on it (an earlier STAGE_DEPS
    left it out: a new template was caught only at the judge stage and --redo kept an M1 trained on the old one)."""
    from selfreward import pipeline
    from selfreward.errors import UserError
    from selfreward.rundir import RunDir, Stage

    template = tmp_path / "judge.txt"
    template.write_text("Question: {instruction}\nAnswer: {response}\nRate it 0-5 as 'Score: N'.\n")
    cfg = run_cfg(run_copy, f"judge.template={template}")
    rd = RunDir(run_copy)
    assert pipeline.state(rd, cfg, Stage("sft", 0)) == f"changed: judge.template was 'builtin', now {str(template)!r}"
    with pytest.raises(UserError, match=r"^sft already finished with other settings \(judge.template"):
        pipeline.check_changes(rd, cfg, redo=False)


def test_sigkill_during_sample_then_resume(tmp_path, tiny_model_dir, capsys):
    """A real SIGKILL in the middle of sample, at an exact point (selfreward.faults): the process kills itself
    as it starts the 2nd of sample's 3 generation batches, whatever the machine's speed."""
    from selfreward import cli, faults
    from selfreward.rundir import RunDir, Stage

    run_dir = tmp_path / "run"
    # one iteration; sample runs one prompt (4 sequences) per batch: 3 batches for the 3 prompts
    extra = ["iterations=1", "generation.batch_size=4"]
    cmd = [str(SELFREWARD_BIN), "run", "--config", "tiny-cpu", "--run-dir", str(run_dir),
           *run_overrides(tiny_model_dir, *extra)]
    env = {**os.environ, faults.KILL_AT: "batch:sample:1@2"}
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        proc.wait()
    text = log.read_text()
    assert proc.returncode == -signal.SIGKILL, text[-3000:]
    assert "[run ] sample (iteration 1)" in text and "[done] sample" not in text

    rd = RunDir(run_dir)
    before = tokens(run_dir)
    # eval-judge of M0 and M1 ran before gen-prompts (the real tiny model judged: nothing parsed, still done), and
    # eval of M1 after it (it answers the held-back prompts gen-prompts wrote)
    assert sorted(before) == ["eval/eval-M1", "eval/judge-M0", "eval/judge-M1", "iter1/gen-prompts", "sft/sft"]
    assert rd.marker(Stage("sample", 1)) is None
    assert not (run_dir / "iter1" / "candidates.jsonl").exists()
    assert (run_dir / "iter1" / "prompts.jsonl").is_file() and (run_dir / "sft" / "model").is_dir()
    assert (run_dir / ".lock").read_text().strip() == str(proc.pid)  # the killed holder's pid; the kernel freed it

    # `selfreward run --run-dir RUN`: the config the killed run wrote; the stale lock is taken over
    assert cli.main(["run", "--run-dir", str(run_dir)]) == 0
    assert f"left by pid {proc.pid}, which is gone; taken over" in capsys.readouterr().out
    after = tokens(run_dir)
    assert sorted(after) == sorted(all_stage_keys(1) + eval_keys(1))
    assert after["sft/sft"] == before["sft/sft"] and after["iter1/gen-prompts"] == before["iter1/gen-prompts"]
    assert after["eval/judge-M0"] == before["eval/judge-M0"] and after["eval/judge-M1"] == before["eval/judge-M1"]
    candidates = [json.loads(line) for line in (run_dir / "iter1" / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == 3 * 4
    assert (run_dir / "iter1" / "model" / "model.safetensors").is_file()
    assert [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")] == []
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert len(manifest["invocations"]) == 2 and manifest["invocations"][0]["argv"][:2] == ["selfreward", "run"]


@pytest.mark.parametrize("point, stage", [("jsonl:judge:1", "judge"), ("model-save:dpo:1", "dpo")])
def test_disk_full_during_a_stage_then_resume(tmp_path, tiny_model_dir, capsys, monkeypatch, point, stage):
    """No space left while a stage writes (its JSONL, or the model it saves): one line and exit 2, every earlier
    artifact intact and no temporary file left; the next run completes. ENOSPC is injected (selfreward.faults)."""
    from selfreward import cli, faults
    from selfreward.rundir import RunDir, Stage

    run_dir = tmp_path / "run"
    argv = ["run", "--config", "tiny-cpu", "--run-dir", str(run_dir),
            *run_overrides(tiny_model_dir, "iterations=1", "judge_eval.max_prompts=0", "eval.suites=[]",
                           "eval.compare_prompts=0")]
    monkeypatch.setenv(faults.FAIL_AT, point)
    assert cli.main(argv) == 2
    # the error is one line, the last; progress bars of libraries (tqdm) may come before it
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("selfreward: error")]
    assert errors == [err[-1]] and errors[0].startswith("selfreward: error: could not ")
    assert "No space left on device" in errors[0]
    rd = RunDir(run_dir)
    before = tokens(run_dir)
    done = all_stage_keys(1)[:all_stage_keys(1).index(f"iter1/{stage}")]
    assert sorted(before) == sorted(done)
    assert rd.marker(Stage(stage, 1)) is None
    assert [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")] == []
    kept = {p: p.read_bytes() for p in (run_dir / "iter1").glob("*.jsonl")}
    assert (run_dir / "sft" / "model" / "model.safetensors").is_file()

    monkeypatch.delenv(faults.FAIL_AT)
    assert cli.main(["run", "--run-dir", str(run_dir)]) == 0
    after = tokens(run_dir)
    assert sorted(after) == sorted(all_stage_keys(1))
    assert all(after[k] == before[k] for k in done)  # nothing finished was redone
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert (run_dir / "iter1" / "model" / "model.safetensors").is_file()
