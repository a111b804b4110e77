"""CLI error paths: exit code 2, exactly one `selfreward: error:` line on stderr, no traceback, and no work done.

The cases run as subprocesses, all started at once by a module fixture, so the file costs about one CLI start-up.
Each must fail before any model is loaded, without creating the run directory or touching the model cache. "Before
any model is loaded" is checked without a clock: the cases run with stand-ins for torch and transformers first on
PYTHONPATH whose import raises, so a case that reached the model stack would end in a traceback.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "selfreward"
if not EXE.is_file():  # pragma: no cover - fall back to the PATH when run from another interpreter
    EXE = Path(shutil.which("selfreward") or EXE)

NO_MODEL_STACK = ("torch", "transformers")  # each replaced by a stand-in whose import raises


def _cases(base: Path) -> dict[str, tuple[list[str], Path]]:
    """name -> (argv, cwd)."""
    cases = {}

    def cwd(name):
        d = base / name
        d.mkdir()
        return d

    d = cwd("unknown_key")
    (d / "bad.yaml").write_text("sample:\n  temprature: 0.5\n", encoding="utf-8")
    cases["unknown_key"] = (["run", "--config", str(d / "bad.yaml")], d)

    d = cwd("missing_ift")
    cases["missing_ift"] = (["run", "--config", "tiny-cpu", "data.ift=/nonexistent/ift.jsonl"], d)

    d = cwd("bad_row")
    rows = [{"prompt": "Say hi", "response": "Hi!"}, {"prompt": "Say bye"}]
    (d / "ift.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cases["bad_row"] = (["run", "--config", "tiny-cpu", f"data.ift={d / 'ift.jsonl'}"], d)

    d = cwd("missing_model")
    cases["missing_model"] = (["run", "--config", "tiny-cpu", "model.name=/nonexistent/model"], d)

    d = cwd("status")
    cases["status"] = (["status", str(d / "not-a-run-dir")], d)

    d = cwd("sample_n")
    cases["sample_n"] = (["run", "--config", "tiny-cpu", "sample.n=1"], d)

    d = cwd("bad_override")
    cases["bad_override"] = (["run", "--config", "tiny-cpu", "samplen4"], d)

    d = cwd("no_recipe")
    cases["no_recipe"] = (["run", "--config", "no-such-recipe"], d)

    d = cwd("missing_template")
    cases["missing_template"] = (["run", "--config", "tiny-cpu", "judge.template=/nonexistent/judge.txt"], d)

    # issue 11: each of these was a traceback, or an error only after the run directory had been written
    d = cwd("latin1_config")
    (d / "recipe.yaml").write_bytes("model:\n  name: caf\u00e9\n".encode("latin-1"))
    cases["latin1_config"] = (["run", "--config", str(d / "recipe.yaml")], d)

    d = cwd("latin1_template")
    (d / "judge.txt").write_bytes("{instruction} {response} \u00e9valuez\n".encode("latin-1"))
    cases["latin1_template"] = (["run", "--config", "tiny-cpu", f"judge.template={d / 'judge.txt'}"], d)

    d = cwd("latin1_chat_template")
    (d / "chat.jinja").write_bytes("{{ messages }} \u00e9\n".encode("latin-1"))
    cases["latin1_chat_template"] = (["run", "--config", "tiny-cpu", f"model.chat_template={d / 'chat.jinja'}"], d)

    d = cwd("config_json_only")
    (d / "model").mkdir()
    (d / "model" / "config.json").write_text("{}")
    cases["config_json_only"] = (["run", "--config", "tiny-cpu", f"model.name={d / 'model'}"], d)

    d = cwd("no_weights")
    (d / "model").mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / "model" / name).write_text("{}")
    cases["no_weights"] = (["run", "--config", "tiny-cpu", f"model.name={d / 'model'}"], d)

    d = cwd("empty_config")
    cases["empty_config"] = (["run", "--config", ""], d)

    d = cwd("nan_temperature")
    cases["nan_temperature"] = (["run", "--config", "tiny-cpu", "sample.temperature=.nan"], d)

    d = cwd("negative_seed")
    cases["negative_seed"] = (["run", "--config", "tiny-cpu", "seed=-1"], d)

    d = cwd("latin1_row")  # not a listed case: a known bug, see test_non_utf8_data_file
    (d / "ift.jsonl").write_bytes('{"prompt": "café", "response": "r"}\n'.encode("latin-1"))
    cases["latin1_row"] = (["run", "--config", "tiny-cpu", f"data.ift={d / 'ift.jsonl'}"], d)
    return cases


def _no_model_stack(base: Path) -> Path:
    stubs = base / "no-model-stack"
    for name in NO_MODEL_STACK:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} was imported')\n")
    return stubs


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    cache = base / "cache"
    env = {**os.environ, "SELFREWARD_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(_no_model_stack(base)), *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs = {}
    for name, (argv, cwd) in _cases(base).items():
        procs[name] = (subprocess.Popen([str(EXE), *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True), cwd)
    out = {}
    for name, (proc, cwd) in procs.items():
        stdout, stderr = proc.communicate(timeout=900)  # a hang guard only: nothing here is timed
        out[name] = {"rc": proc.returncode, "stdout": stdout, "stderr": stderr, "cwd": cwd}
    out["_cache"] = cache
    return out


CASES = ["unknown_key", "missing_ift", "bad_row", "missing_model", "status", "sample_n", "bad_override",
         "no_recipe", "missing_template", "latin1_config", "latin1_template", "latin1_chat_template",
         "config_json_only", "no_weights", "empty_config", "nan_temperature", "negative_seed"]


@pytest.mark.parametrize("name", CASES)
def test_one_line_error_exit_2(results, name):
    r = results[name]
    assert "Traceback" not in r["stderr"] + r["stdout"]
    lines = r["stderr"].splitlines()
    assert len(lines) == 1, r["stderr"]
    assert lines[0].startswith("selfreward: error: ")
    assert r["rc"] == 2


@pytest.mark.parametrize("name", CASES)
def test_fails_fast_without_side_effects(results, name):
    r = results[name]
    assert "was imported" not in r["stderr"]  # see _no_model_stack
    assert not (r["cwd"] / "runs").exists()  # the run directory is not created
    assert r["stdout"] == ""
    assert "Converting" not in r["stderr"]


def test_model_cache_untouched(results):
    assert not results["_cache"].exists()


def message(results, name):
    return results[name]["stderr"].strip().removeprefix("selfreward: error: ")


def test_unknown_key_message(results):
    path = results["unknown_key"]["cwd"] / "bad.yaml"
    assert message(results, "unknown_key").startswith(f"{path}: unknown config key 'sample.temprature'")


def test_missing_ift_message(results):
    assert message(results, "missing_ift") == "data file not found: /nonexistent/ift.jsonl (data.ift)"


def test_bad_row_message(results):
    path = results["bad_row"]["cwd"] / "ift.jsonl"
    assert message(results, "bad_row") == f"{path} row 2: missing field 'response'"


def test_missing_model_message(results):
    assert message(results, "missing_model") == "model path does not exist: /nonexistent/model"


def test_status_message(results):
    path = results["status"]["cwd"] / "not-a-run-dir"
    assert message(results, "status") == (f"{path} is not a run directory (no config.yaml); start one with "
                                          "selfreward run")


def test_sample_n_message(results):
    assert "'sample.n' must be at least 2" in message(results, "sample_n")


def test_bad_override_message(results):
    assert message(results, "bad_override") == "override 'samplen4' must look like key=value, e.g. sample.n=4"


def test_no_recipe_message(results):
    msg = message(results, "no_recipe")
    assert msg.startswith("config file not found: no-such-recipe (a path, or a shipped recipe: ")
    assert "tiny-cpu" in msg


def test_missing_template_message(results):
    assert message(results, "missing_template") == "judge template not found: /nonexistent/judge.txt (judge.template)"


def test_non_utf8_data_file(results):
    r = results["latin1_row"]
    assert "Traceback" not in r["stderr"]
    assert r["rc"] == 2
    assert str(r["cwd"] / "ift.jsonl") in message(results, "latin1_row")


@pytest.mark.parametrize("name, expected", [
    ("latin1_config", "{cwd}/recipe.yaml:2: not UTF-8 text"),
    ("latin1_template", "judge template {cwd}/judge.txt: not UTF-8 text (judge.template)"),
    ("latin1_chat_template", "{cwd}/chat.jinja:1: not UTF-8 text (model.chat_template)"),
    ("config_json_only", "model path {cwd}/model has no tokenizer files"),
    ("no_weights", "model path {cwd}/model has no weights"),
    ("empty_config", "--config is empty"),
    ("nan_temperature", "'sample.temperature' must be a finite number, got nan"),
    ("negative_seed", "'seed' must be between 0 and 2147483647, got -1"),
])
def test_issue_11_messages(results, name, expected):
    assert expected.format(cwd=results[name]["cwd"]) in message(results, name)
