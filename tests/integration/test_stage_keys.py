"""Every stage, run on the tiny model through a config that records each key it reads, against what it declares.

A stage that reads a key it does not declare would be counted done after that key changed; this test fails then.
Declared keys a stage never read are listed (printed with -s) rather than failed: a section is declared whole,
and some keys are read only in some modes (judge.k in sample mode, not in expected mode).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from integration_helpers import load_cfg
from selfreward.config import NEUTRAL
from selfreward.rundir import RunDir, Stage
from selfreward.stages import ALL, BY_NAME, Context

# One tiny run with every stage, in an order each stage's inputs exist (the evaluations of M1 after gen-prompts 1).
ORDER = [Stage("sft", 0), Stage("eval-judge", 0), Stage("eval-judge", 1), Stage("gen-prompts", 1), Stage("eval", 1),
         Stage("sample", 1), Stage("judge", 1), Stage("meta-judge", 1), Stage("pairs", 1), Stage("dpo", 1),
         Stage("eval-judge", 2), Stage("eval", 2), Stage("compare", 2)]


class Recording:
    """A read-only view of a config dataclass that records the dotted key of every leaf read through it."""

    def __init__(self, obj, log: set[str], prefix: str = ""):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str):
        value = getattr(self._obj, name)
        key = self._prefix + name
        if dataclasses.is_dataclass(value):
            return Recording(value, self._log, key + ".")
        self._log.add(key)
        return value

    def __setattr__(self, name, value):
        raise AttributeError(f"a stage set config key {self._prefix}{name}")


def covered(key: str, names: tuple[str, ...]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def run_recorded(run_dir, cfg) -> dict[str, set[str]]:
    rd = RunDir(run_dir)
    rd.root.mkdir(parents=True)
    (rd.root / "config.yaml").write_text(json.dumps(cfg.to_dict()))
    reads: dict[str, set[str]] = {}
    for stage in ORDER:
        log: set[str] = set()
        BY_NAME[stage.name].run(Context(rd, Recording(cfg, log), stage.iteration, stage.name))
        reads.setdefault(stage.name, set()).update(log)
        for pattern in BY_NAME[stage.name].writes:
            path = rd.root / pattern.format(t=stage.iteration, prev=stage.iteration - 1)
            assert path.exists(), f"{stage} declares it writes {pattern}, but {path} does not exist"
    return reads


@pytest.fixture(scope="module", params=["sample", "expected"])
def reads(request, tmp_path_factory, tiny_model_dir):
    cfg = load_cfg(tiny_model_dir, "iterations=2", f"judge.mode={request.param}", "eval.compare_prompts=2")
    return request.param, run_recorded(tmp_path_factory.mktemp(f"keys-{request.param}") / "run", cfg)


def test_every_stage_ran(reads):
    assert set(reads[1]) == {s.name for s in ALL}


@pytest.mark.parametrize("name", [s.name for s in ALL])
def test_a_stage_reads_only_what_it_declares(reads, name, capsys):
    mode, recorded = reads
    spec = BY_NAME[name]
    undeclared = sorted(k for k in recorded[name] if not covered(k, spec.deps) and not covered(k, NEUTRAL))
    unread = sorted(d for d in spec.deps if not any(covered(k, (d,)) for k in recorded[name]))
    with capsys.disabled():
        print(f"\n[{mode}] {name}: reads {sorted(k for k in recorded[name] if not covered(k, NEUTRAL))}"
              + (f"; declared, not read here: {unread}" if unread else ""))
    assert not undeclared, f"{name} reads {undeclared} but does not declare them (stages/{name}.py STAGE.deps)"
