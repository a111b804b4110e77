"""Property tests (hypothesis): random bytes and random JSON/YAML shapes in every file a user or a crash can damage
never give a traceback. Each reader returns, or raises one UserError line naming the file (and row, field or key);
each command exits 0 or 2 with one `selfreward: error:` line, and `status` and a failing `report` write nothing.

No model is loaded; each test takes a few seconds at most (example counts are in the settings below).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from run_helpers import GEN1, SFT, make_run, snapshot
from selfreward.cli import main
from selfreward.config import RunConfig, flatten, load_config
from selfreward.data import load_eft, load_ift
from selfreward.errors import UserError
from selfreward.judges.sets import load_judge_set
from selfreward.records import read_jsonl
from selfreward.report.collect import collect
from selfreward.report.render import markdown, to_html
from selfreward.rundir import RunDir

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
MANY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
FEW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

KEYS = sorted(flatten(RunConfig().to_dict()))  # every dotted config key
scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# realistic damage: truncations and byte flips of a real file, as well as plain random bytes
random_bytes = st.binary(max_size=300)


def one_line(e: UserError, *must_name: str) -> None:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    assert any(name in msg for name in must_name), (must_name, msg)


@contextlib.contextmanager
def scratch(name: str):
    """A fresh directory per example (hypothesis reruns the body; function-scoped fixtures would be shared)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"prop-{name}-") as d:
        yield Path(d)


# --- data readers --------------------------------------------------------------------------------------------------
@FAST
@given(data=random_bytes)
def test_read_jsonl_random_bytes(data):
    with scratch("jsonl") as d:
        path = d / "rows.jsonl"
        path.write_bytes(data)
        try:
            rows = read_jsonl(path)
        except UserError as e:
            one_line(e, f"{path}:")
            return
        assert all(isinstance(r, dict) for r in rows)


@FAST
@given(lines=st.lists(json_values, max_size=5))
def test_read_jsonl_random_json_lines(lines):
    with scratch("jsonl") as d:
        path = d / "rows.jsonl"
        path.write_text("".join(json.dumps(v) + "\n" for v in lines))
        try:
            rows = read_jsonl(path)
        except UserError as e:
            one_line(e, f"{path}:")
            return
        assert rows == [v for v in lines if isinstance(v, dict)] or len(rows) == len(lines)


data_rows = st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"prompt": json_values | st.text(max_size=8), "response": json_values | st.text(max_size=8),
                  "target": json_values | st.sampled_from(["Score: 4", "Fine.\nScore: 2", "Score: 9",
                                                           "ok\nScore: 1\nx"]),
                  "extra": json_values})), min_size=0, max_size=5)


@FAST
@given(rows=data_rows)
def test_load_ift_and_eft_random_rows(rows):
    with scratch("data") as d:
        path = d / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for load in (lambda: load_ift(str(path)), lambda: load_eft(str(path), "eft_train")):
            try:
                got = load()
            except UserError as e:
                one_line(e, str(path))
                continue
            assert all(isinstance(r["prompt"], str) and r["prompt"].strip() for r in got)


judge_rows = st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "prompt": st.text(max_size=6) | json_values, "response": st.text(max_size=6) | json_values,
    "human_score": st.floats(allow_nan=True) | st.integers(-5, 5) | json_values, "rank": st.integers(-2, 4),
    "prompt_id": st.integers(0, 2) | st.text(max_size=2), "id": json_values,
    "input": st.text(max_size=4), "output_1": st.text(max_size=4), "output_2": st.text(max_size=4),
    "label": st.integers(-1, 3) | json_values, "response 1": st.text(max_size=4), "response 2": st.text(max_size=4),
    "prompt_text": st.text(max_size=4), "response_id": st.integers(0, 9), "response_text": st.text(max_size=4),
    "quality_score": st.none() | st.floats(allow_nan=True)})), min_size=0, max_size=6)


@FAST
@given(rows=judge_rows)
@example(rows=[{"\n": None}])  # found by this test in CI: a field name with a line break broke the one line
def test_load_judge_set_random_rows(rows):
    with scratch("judgeset") as d:
        path = d / "set.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        try:
            groups, notes = load_judge_set(str(path))
        except UserError as e:
            one_line(e, str(path))
            return
        assert all(len(g["responses"]) >= 2 for g in groups)


prompt_rows = st.lists(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["instruction", "prompt", "turns", "output", "reference", "id", "\n", "a\tb"])
    | st.text(max_size=4),
    st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=3) | json_values, max_size=4)), max_size=4)


@FAST
@given(rows=prompt_rows)
@example(rows=[{"\n": 1}])  # the same line break in a field name as the judge sets' reader had
def test_load_prompt_set_random_rows(rows):
    from selfreward.evals.prompts import load_prompt_set

    with scratch("prompts") as d:
        path = d / "prompts.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        try:
            loaded = load_prompt_set(str(path))
        except UserError as e:
            one_line(e, str(path))
            return
        assert len(loaded) == len(rows) and all(r["instruction"].strip() for r in loaded)


# --- config: YAML files and overrides ------------------------------------------------------------------------------
@FAST
@given(data=random_bytes)
def test_recipe_random_bytes(data):
    with scratch("yaml") as d:
        path = d / "recipe.yaml"
        path.write_bytes(data)
        try:
            load_config(path)
        except UserError as e:
            one_line(e, str(path))


def nest(pairs: list[tuple[str, object]]) -> dict:
    """Dotted keys (real ones, and some not) with random values -> the nested mapping a YAML file holds."""
    out: dict = {}
    for key, value in pairs:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[parts[-1]] = value
    return out


config_keys = (st.sampled_from(KEYS) | st.sampled_from(["sample", "sft.lora", "bogus", "sample.bogus"])
               | st.text(max_size=6))


@MANY
@given(pairs=st.lists(st.tuples(config_keys, json_values), max_size=6))
def test_recipe_random_yaml_mappings(pairs):
    with scratch("yaml") as d:
        path = d / "recipe.yaml"
        path.write_text(yaml.safe_dump(nest(pairs), allow_unicode=True))
        try:
            load_config(path)
        except UserError as e:
            one_line(e, str(path))


yaml_scalar_text = st.sampled_from([".nan", ".inf", "-.inf", "1e-6", "1e999", "-1", "0", "null", "[]", "{}", "[1, 2",
                                    "yes", "no", "'x'", "2024-13-45", "{a: 1, a: 2}", "!!binary aGk=", "&a [*a]"]) \
    | st.text(max_size=10)


@MANY
@given(items=st.lists(st.tuples(config_keys | st.text(max_size=8), st.sampled_from(["=", "", "=="]), yaml_scalar_text)
                      .map(lambda t: f"{t[0]}{t[1]}{t[2]}"), max_size=4))
def test_random_overrides(items):
    try:
        cfg = load_config(None, items)
    except UserError as e:
        one_line(e, "override", "defaults")
        return
    assert isinstance(cfg, RunConfig)


# --- a run directory: config.yaml and done-markers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("prop") / "run")[0].root


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(rc: int, err: str, *must_name: str) -> None:
    assert rc == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfreward: error: "), err
    assert any(name in lines[0] for name in must_name), (must_name, lines[0])


@contextlib.contextmanager
def replaced(path: Path, data: bytes):
    """`path` holds `data` inside the block, its old bytes after."""
    old = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(old)


def damaged_versions(original: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, and the original truncated or with a run of bytes overwritten."""
    cut = st.integers(0, len(original)).map(lambda n: original[:n])
    flip = st.tuples(st.integers(0, len(original) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda t: original[:t[0]] + t[1] + original[t[0] + len(t[1]):])
    return random_bytes | cut | flip


@FAST
@given(data=st.data())
def test_status_and_report_on_a_damaged_config(base_run, data):
    path = base_run / "config.yaml"
    original = path.read_bytes()
    damaged = data.draw(damaged_versions(original))
    with replaced(path, damaged):
        before = snapshot(base_run)
        rc, _, err = cli(["status", str(base_run)])
        if rc == 0:  # a change that left a valid config (a flipped byte inside a value, say)
            assert err == ""
        else:
            assert_one_line_error(rc, err, str(path))
            assert_one_line_error(*cli(["report", str(base_run)])[::2], str(path))
        assert snapshot(base_run) == before  # nothing written, not even by status


@FAST
@given(data=st.data())
def test_status_and_report_on_a_damaged_marker(base_run, data):
    path = RunDir(base_run)._marker(SFT)
    original = path.read_bytes()
    damaged = data.draw(damaged_versions(original) | json_values.map(lambda v: json.dumps(v).encode()))
    with replaced(path, damaged):
        before = snapshot(base_run)
        rc, _, err = cli(["status", str(base_run)])
        if rc != 0:
            assert_one_line_error(rc, err, str(path))
            assert_one_line_error(*cli(["report", str(base_run)])[::2], str(path))
        assert snapshot(base_run) == before


envelope_stats = st.dictionaries(st.sampled_from(["examples", "steps", "train_loss", "wall_seconds", "prompts_kept",
                                                  "judgments", "mean_score", "score_histogram", "parse_failure_rate",
                                                  "pairs_used", "judge_mode"]) | st.text(max_size=5),
                                 json_values, max_size=6)


@FEW
@given(stats=envelope_stats, which=st.sampled_from(["sft", "gen-prompts"]))
def test_any_stats_in_a_valid_marker(base_run, stats, which):
    """A marker's stats are free-form: status prints them and the report renders them, whatever they hold."""
    path = RunDir(base_run)._marker(SFT if which == "sft" else GEN1)
    marker = json.loads(path.read_bytes())
    marker["stats"] = stats
    with replaced(path, json.dumps(marker).encode()):
        before = snapshot(base_run)
        rc, out, err = cli(["status", str(base_run)])
        assert (rc, err) == (0, ""), err
        results = collect(base_run)
        markdown(results, {})
        to_html(results, {})
        assert snapshot(base_run) == before


def test_report_on_a_valid_run_writes_and_status_stays_read_only(tmp_path):
    """The counterpart: the undamaged run gives exit 0 for both, and only report writes (its own files)."""
    run = make_run(tmp_path / "run")[0].root
    before = snapshot(run)
    assert cli(["status", str(run)])[0] == 0
    assert snapshot(run) == before
    assert cli(["report", str(run)])[0] == 0
    assert {p for p in snapshot(run)} - set(before) >= {"report.html", "report.md", "results.json"}
    shutil.rmtree(run)
