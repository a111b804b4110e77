"""Issue 11, "nothing breaks on bad state": a damaged, foreign, read-only or busy run directory, and bad command
lines, give exactly one `selfreward: error:` line and exit status 2, and write nothing. No model is loaded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from run_helpers import GEN1, SFT, make_run, one_line_error, read_only, snapshot
from selfreward.cli import main
from selfreward.errors import UserError
from selfreward.rundir import RunDir

EXE = Path(sys.executable).parent / "selfreward"


@pytest.fixture
def run(tmp_path) -> Path:
    return make_run(tmp_path / "run")[0].root


def fails(argv: list[str], capsys, root: Path) -> str:
    """Run the command; assert exit 2, one error line, and no file written under root. Returns the message."""
    before = snapshot(root)
    assert main(argv) == 2
    msg = one_line_error(capsys)
    assert snapshot(root) == before
    return msg


# every command that reads a run directory, as (argv, is it a write command); `run` resumes from config.yaml
def commands(root: Path) -> list[list[str]]:
    return [["status", str(root)], ["report", str(root)], ["pairs", str(root), "-t", "1"],
            ["sample", str(root), "-t", "1"], ["run", "--run-dir", str(root)]]


# --- a damaged config.yaml ------------------------------------------------------------------------------------
DAMAGED_CONFIGS = {
    "garbage": (b"\x00\x13garbage: [", "not valid YAML"),
    "empty": (b"", "config.yaml is empty"),
    "list": (b"[]\n", "config.yaml is a list"),
    "latin1": ("model:\n  name: caf\u00e9\n".encode("latin-1"), "config.yaml:2: not UTF-8 text"),
    "duplicate key": (None, "key 'sft.batch_size' is given twice"),
    "unknown key": (None, "unknown config key 'sample.temprature'"),
    "truncated at a line": (None, "cut short or damaged"),
    "truncated mid-line": (None, "ends in the middle of a line"),
}


def damage_config(path: Path, kind: str) -> None:
    text = path.read_text()
    data, _ = DAMAGED_CONFIGS[kind]
    if data is not None:
        path.write_bytes(data)
    elif kind == "duplicate key":
        path.write_text(text.replace("sft:\n", "sft:\n  batch_size: 2\n", 1))
    elif kind == "unknown key":
        path.write_text(text.replace("sample:\n", "sample:\n  temprature: 0.5\n", 1))
    elif kind == "truncated at a line":
        path.write_text(text[:text.index("\nsample:") + 1])  # the lost sections would read as defaults
    else:
        path.write_text(text[:-3])


@pytest.mark.parametrize("kind", list(DAMAGED_CONFIGS))
def test_damaged_config_is_one_line_for_every_command(run, kind, capsys):
    damage_config(run / "config.yaml", kind)
    for argv in commands(run):
        msg = fails(argv, capsys, run)
        assert str(run / "config.yaml") in msg and DAMAGED_CONFIGS[kind][1] in msg, (argv, msg)


def test_truncated_config_is_not_taken_for_a_changed_one(run, capsys):
    """Regression: a config.yaml cut after its sft section loaded the rest as defaults, and status reported
    'changed: sample.n was ..., now 4' as if the user had changed it."""
    path = run / "config.yaml"
    path.write_text(path.read_text().replace("  n: 4\n", "  n: 6\n"))  # a hand edit: allowed, every key is there
    assert main(["status", str(run)]) == 0
    assert "changed: sample.n" not in capsys.readouterr().out  # sample has not run: its marker records nothing
    damage_config(path, "truncated at a line")
    msg = fails(["status", str(run)], capsys, run)
    assert msg.startswith(f"{path} lacks sample, judge, reward, ...: cut short")


def test_an_older_run_without_the_recorded_sha256_still_loads(tmp_path, capsys):
    """Runs written before manifest.json recorded config.yaml's sha256 lack newer keys: they still load."""
    import shutil

    fixture = Path(__file__).parents[1] / "fixtures" / "run_small"
    shutil.copytree(fixture, tmp_path / "run")
    assert "config_sha256" not in json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert main(["status", str(tmp_path / "run")]) == 0
    path = tmp_path / "run" / "config.yaml"
    text = path.read_text()
    path.write_text(text[:text.index("\nsample:") + 1])  # but one cut short at a line still fails
    assert "cut short" in fails(["status", str(tmp_path / "run")], capsys, tmp_path / "run")


# --- a damaged done-marker ------------------------------------------------------------------------------------
DAMAGED_MARKERS = {
    "truncated": (b'{"stage": "sft", "iteration": 0, "tok', "not valid JSON"),
    "binary": (b"\x00\xff\xfe\x01", "sft.done.json:1: not UTF-8 text"),
    "list": (b"[]", "a done-marker must be a JSON object, got list"),
    "no after": (b'{"token": "x"}', "missing field 'stage'"),
    "after missing": (b'{"stage": "sft", "iteration": 0, "token": "x", "config": {}, "stats": {}}',
                      "missing field 'after'"),
    "wrong type": (b'{"stage": "sft", "iteration": 0, "token": 5, "after": null, "config": {}, "stats": {}}',
                   "field 'token' is int"),
    "another stage's": (b'{"stage": "dpo", "iteration": 2, "token": "x", "after": null, "config": {}, "stats": {}}',
                        "belongs to 'dpo' of iteration 2"),
    "a directory": (None, "a done-marker must be a file"),
}


@pytest.mark.parametrize("kind", list(DAMAGED_MARKERS))
def test_damaged_marker_is_one_line_for_every_command(run, kind, capsys):
    path = RunDir(run)._marker(SFT)
    data, expected = DAMAGED_MARKERS[kind]
    path.unlink()
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    for argv in commands(run):
        if argv[0] in ("pairs", "sample"):
            continue  # they read the marker of the stage before them, not sft's (below)
        msg = fails(argv, capsys, run)
        assert msg.startswith(str(path)) and expected in msg and msg.endswith("delete it to redo sft"), (argv, msg)


def test_damaged_marker_of_the_stage_before_a_stage_command(run, capsys):
    path = RunDir(run)._marker(GEN1)
    path.write_text('{"token": "x"}')  # regression: KeyError: 'after'
    msg = fails(["sample", str(run), "-t", "1"], capsys, run)
    assert msg == f"{path}: damaged done-marker, missing field 'stage'; delete it to redo gen-prompts (iteration 1)"


def test_marker_with_odd_stats_still_shows_in_status(run, capsys):
    """A marker's stats are free-form: status shows whatever is there, never a KeyError or TypeError."""
    marker = json.loads(RunDir(run)._marker(SFT).read_text())
    marker["stats"] = {"examples": "many", "wall_seconds": "slow"}
    RunDir(run)._marker(SFT).write_text(json.dumps(marker))
    assert main(["status", str(run)]) == 0
    assert "SFT: many examples (? too long, dropped), ? steps, loss ?, 0s" in capsys.readouterr().out


# --- status and report write nothing they should not ---------------------------------------------------------
def test_status_writes_nothing(run, capsys):
    before = snapshot(run)
    assert main(["status", str(run)]) == 0
    assert snapshot(run) == before
    assert not (run / "summary.json").exists()
    assert "sft " in capsys.readouterr().out


def test_status_and_report_of_a_read_only_run_directory(run, capsys):
    with read_only(run):
        assert main(["status", str(run)]) == 0  # regression: PermissionError writing summary.json
        assert "gen-prompts (iteration 1)" in capsys.readouterr().out
        msg = fails(["report", str(run)], capsys, run)
        assert msg.startswith(f"cannot write to {run} (") and "report writes report.html" in msg


@pytest.mark.parametrize("command, done", [("sample", 2), ("pairs", 4)])  # the stages before it are done
def test_stage_command_in_a_read_only_run_directory_says_it_must_write(tmp_path, command, done, capsys):
    root = make_run(tmp_path / "run", done=done)[0].root
    with read_only(root):
        msg = fails([command, str(root), "-t", "1"], capsys, root)  # regression: PermissionError / EROFS traceback
    assert msg.startswith(f"cannot write to {root} (") and f"the {command} stage writes into the run directory" in msg


def test_report_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    msg = fails(["report", str(tmp_path)], capsys, tmp_path)
    assert msg == f"{tmp_path} is not a run directory (no config.yaml); start one with selfreward run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_report_validates_the_config_like_status(run, capsys):
    """Regression: report accepted an unknown key that status refused."""
    damage_config(run / "config.yaml", "unknown key")
    assert "unknown config key 'sample.temprature'" in fails(["report", str(run)], capsys, run)


# --- command lines that write before they check ------------------------------------------------------------------
def test_stage_command_checks_everything_before_writing(run, capsys):
    """Regression: `sample RUN --iteration 99 sample.n=5` exited 2 only after rewriting config.yaml and the
    manifest, and the run then read as changed."""
    assert "--iteration must be between 1 and 1" in fails(["sample", str(run), "-t", "99", "sample.n=5"], capsys, run)
    # the stage before it has not finished: refused before the override is written
    msg = fails(["judge", str(run), "-t", "1", "judge.k=5"], capsys, run)
    assert msg.startswith(f"{run}: sample (iteration 1) has not finished")
    assert "not valid YAML" not in fails(["sample", str(run), "-t", "1", "sample.n=x"], capsys, run)


@pytest.mark.parametrize("argv, expected", [
    (["run", "--config", ""], "--config is empty"),
    (["run", "--run-dir", " "], "--run-dir is empty"),
    (["status", ""], "RUN_DIR is empty"),
    (["report", ""], "RUN_DIR is empty"),
    (["pairs", "", "-t", "1"], "RUN_DIR is empty"),
])
def test_empty_paths_are_refused(argv, expected, tmp_path, capsys, monkeypatch):
    """'' is not 'the defaults' nor 'the current directory'."""
    monkeypatch.chdir(tmp_path)
    assert fails(argv, capsys, tmp_path).startswith(expected)


def test_run_refuses_a_foreign_directory(tmp_path, capsys):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("...")
    msg = fails(["run", "--config", "tiny-cpu", "--run-dir", str(tmp_path / "home")], capsys, tmp_path)
    assert msg.startswith(f"{tmp_path / 'home'} is not empty and is not a run directory")


# --- the lock -------------------------------------------------------------------------------------------------------
HOLD = """
import sys
from selfreward.rundir import RunDir
with RunDir(sys.argv[1]).lock("test"):
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills us)
"""


def hold_lock(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "locked\n"  # blocks until the lock is held: no clock
    return proc


def test_a_second_writer_is_refused_in_one_line(run, capsys):
    holder = hold_lock(run)
    try:
        msg = fails(["sample", str(run), "-t", "1"], capsys, run)
        assert msg == (f"{run} is in use by another selfreward process (pid {holder.pid}); wait for it to finish, "
                       "or stop it and run again")
        assert "in use" in fails(["run", "--run-dir", str(run)], capsys, run)
        assert main(["status", str(run)]) == 0  # reading needs no lock
    finally:
        holder.stdin.close()
        holder.wait()
    with RunDir(run).lock("test"):  # released: free again
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(run, capsys):
    holder = hold_lock(run)
    holder.kill()
    holder.wait()
    assert (run / ".lock").read_text().strip() == str(holder.pid)  # the file stays; the kernel dropped the lock
    with RunDir(run).lock("test"):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    out = capsys.readouterr().out
    assert f"left by pid {holder.pid}, which is gone; taken over" in out
    with RunDir(run).lock("test"):  # a clean release leaves no pid behind: nothing to report next time
        pass
    assert "taken over" not in capsys.readouterr().out


def test_lock_in_a_read_only_directory(run):
    with read_only(run):
        with pytest.raises(UserError, match=f"^cannot write to {run} .*: the test writes into the run directory"):
            with RunDir(run).lock("the test"):
                pass


# --- the CLI's last-resort handlers -------------------------------------------------------------------------------
def test_status_into_a_closed_pipe_exits_quietly(run):
    """`selfreward status RUN | head -1`: the reader is gone before the output is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, whatever the timing
    proc = subprocess.run([str(EXE), "status", str(run)], stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_an_os_error_is_one_line(monkeypatch, capsys, tmp_path):
    from selfreward.commands import run as run_command

    def full(ns):
        raise OSError(28, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(run_command, "status", full)
    assert main(["status", str(tmp_path)]) == 2
    assert one_line_error(capsys) == f"No space left on device: {tmp_path / 'x'}"
