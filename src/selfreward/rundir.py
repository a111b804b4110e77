"""Run-directory layout, done-markers and the resume rules.

A stage is done when its marker exists. The marker records the config keys the stage depends on and the
marker token of the stage before it, so a later run can tell "finished and still valid" from "finished with
other settings" (refused unless the user asks to redo) and from "its input was recomputed" (redone).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import os
import typing
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from selfreward.config import RunConfig, apply_overrides, flatten, from_dict, load_yaml
from selfreward.errors import UserError
from selfreward.records import read_json, read_text, write_json, write_text

ITER_STAGES = ["gen-prompts", "sample", "judge", "meta-judge", "pairs", "dpo"]
META_JUDGE = "meta-judge"  # in the chain only with meta.enabled (Meta-Rewarding): judge -> meta-judge -> pairs
# Set in the processes `accelerate launch` starts for a training stage: the launching process holds the lock.
LAUNCHED = "SELFREWARD_UNDER_ACCELERATE"
LOCK = ".lock"
# A marker is written by mark_done and nothing else; these fields, of these types, or it is damaged.
_MARKER_FIELDS = {"stage": (str,), "iteration": (int,), "token": (str,), "after": (str, type(None)),
                  "config": (dict,), "stats": (dict,)}
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


def plan(iterations: int, judge_eval: bool = False, evals: bool = False, compare: bool = False,
         meta: bool = False) -> list[Stage]:
    """Every stage of a run, in order. Each model is evaluated once it exists: as a judge (judge_eval), on the
    benchmark suites and held-back prompts (evals; M1 once iteration 1 has written those prompts), and head to
    head against the models before it (compare). `meta`: the meta-judge stage between judge and pairs."""
    judged = (lambda t: [Stage(EVAL_JUDGE, t)]) if judge_eval else (lambda t: [])
    stages = [Stage("sft", 0)] + judged(0) + judged(1)
    for t in range(1, iterations + 1):
        stages += [Stage("gen-prompts", t)] + ([Stage("eval", 1)] if evals and t == 1 else [])
        stages += [Stage(s, t) for s in _chain(meta)[1:]] + judged(t + 1)
        stages += ([Stage("eval", t + 1)] if evals else []) + ([Stage("compare", t + 1)] if evals and compare else [])
    return stages


def _chain(meta: bool) -> list[str]:
    return ITER_STAGES if meta else [s for s in ITER_STAGES if s != META_JUDGE]


def previous(stage: Stage, meta: bool = False) -> Stage | None:
    """The stage whose output this one reads. Judge evaluations hang off the chain: redoing one never
    invalidates the loop, and each is redone when the model it evaluates is. `meta`: meta.enabled (pairs follow
    meta-judge, which follows judge)."""
    t = stage.iteration
    if stage.name == "sft" or stage.name == EVAL_JUDGE and t == 0:
        return None
    if stage.name == "compare":
        return Stage("eval", t)
    if stage.name == "eval" and t == 1:
        return Stage("gen-prompts", 1)  # M1's answers to the held-back prompts are needed by every compare
    if stage.name in ("gen-prompts", EVAL_JUDGE, "eval"):
        return Stage("sft", 0) if t == 1 else Stage("dpo", t - 1)
    chain = _chain(meta or stage.name == META_JUDGE)
    return Stage(chain[chain.index(stage.name) - 1], t)


def stage_config(cfg: RunConfig, deps: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The values of the config keys (or whole sections) `deps` names, flattened: what a done-marker records."""
    flat = flatten(cfg.to_dict())
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
        """The stage's done-marker, None if it has none; a damaged one is a UserError naming the file and what
        is wrong, with the way out (delete it: the stage is then redone)."""
        path = self._marker(stage)
        if not path.exists():
            return None
        hint = f"delete it to redo {stage}"
        if not path.is_file():
            raise UserError(f"{path}: a done-marker must be a file; {hint}")
        try:
            marker = read_json(path)
        except UserError as e:
            raise UserError(f"{str(e).removesuffix('; fix or delete the file')}; {hint}") from None
        if not isinstance(marker, dict):
            raise UserError(f"{path}: a done-marker must be a JSON object, got {type(marker).__name__}; {hint}")
        for name, types_ in _MARKER_FIELDS.items():
            if name not in marker:
                raise UserError(f"{path}: damaged done-marker, missing field '{name}'; {hint}")
            value = marker[name]
            if isinstance(value, bool) or not isinstance(value, types_):
                raise UserError(f"{path}: damaged done-marker, field '{name}' is {type(value).__name__}; {hint}")
        if (marker["stage"], marker["iteration"]) != (stage.name, stage.iteration):
            raise UserError(f"{path}: this done-marker belongs to {marker['stage']!r} of iteration "
                            f"{marker['iteration']}, not to {stage}; {hint}")
        return marker

    def mark_done(self, stage: Stage, config: dict[str, Any], previous: Stage | None, stats: dict[str, Any]) -> None:
        """`config`: stage_config() of the stage's dependencies."""
        prev_marker = self.marker(previous) if previous else None
        write_json(self._marker(stage), {
            "stage": stage.name,
            "iteration": stage.iteration,
            "token": uuid.uuid4().hex,
            "after": prev_marker["token"] if prev_marker else None,
            "config": config,
            "stats": stats,
        })

    def clear(self, stage: Stage) -> None:
        self._marker(stage).unlink(missing_ok=True)

    # the run's config -----------------------------------------------------------------------------------
    def write_config(self, cfg: RunConfig) -> str:
        """Write config.yaml (atomically); returns its sha256, which prepare records in manifest.json."""
        data = (yaml.safe_dump(cfg.to_dict(), sort_keys=False)).encode("utf-8")
        write_text(self.config_path, data)
        return hashlib.sha256(data).hexdigest()

    def config_mapping(self) -> dict[str, Any]:
        """config.yaml as the mapping it holds, checked: valid UTF-8 and YAML, no key twice, a mapping, known
        keys and valid values, and not cut short (see `_check_complete`)."""
        path = self.config_path
        if not path.is_file():
            raise UserError(f"{self.root} is not a run directory (no config.yaml); start one with selfreward run")
        text = read_text(path)
        data = load_yaml(text, str(path))
        if not isinstance(data, dict) or not data:
            shape = "empty" if data is None or data == {} else f"a {type(data).__name__}, not a mapping of sections"
            raise UserError(f"{path} is {shape}: damaged; restore it (selfreward wrote the full config) or start "
                            "a new run directory")
        self._check_complete(data, text)
        from_dict(data, str(path))
        return data

    def load_config(self, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """The run's config (`config_mapping`), with command-line overrides applied and validated."""
        data = self.config_mapping()
        apply_overrides(data, list(overrides))
        return from_dict(data, str(self.config_path) + (" with its command-line overrides" if overrides else ""))

    def _check_complete(self, data: dict[str, Any], text: str) -> None:
        """A config.yaml cut short must not read as defaults. selfreward writes every key, ending with a newline,
        and records the file's sha256 in manifest.json: a file that still has it is whole. Any other (edited,
        damaged, or from a run before the sha256 was recorded) must end with a newline and hold the keys
        `yaml.safe_dump` writes last (iterations, seed); with a sha256 recorded, every key."""
        manifest = self.root / "manifest.json"
        try:
            recorded = read_json(manifest).get("config_sha256") if manifest.is_file() else None
        except (UserError, AttributeError):
            recorded = "unreadable"
        if recorded is not None and recorded == hashlib.sha256(text.encode("utf-8")).hexdigest():
            return
        missing = _missing_keys(RunConfig, data, "") if recorded is not None else \
            [k for k in ("iterations", "seed") if k not in data]
        if missing or not text.endswith("\n"):
            what = (f"lacks {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}" if missing
                    else "ends in the middle of a line")
            raise UserError(f"{self.config_path} {what}: cut short or damaged (selfreward writes every key); "
                            "restore it or start a new run directory")

    # lock -----------------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, purpose: str):
        """Hold RUN/.lock (flock) for the block: one process at a time writes a run directory. The kernel drops
        the lock when its process dies, so a lock file left by a killed run is simply taken over. Creates the
        directory. `purpose`: what needs to write, for the message when it cannot ("the sample stage")."""
        # Started by accelerate launch, the launching process holds the lock; under a bare torchrun, rank 0 does.
        if os.environ.get(LAUNCHED) or int(os.environ.get("RANK") or 0) > 0:
            yield
            return
        path = self.root / LOCK
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot write to {self.root} ({_reason(e)}): {purpose} writes into the run "
                            "directory; make it writable or copy the run elsewhere") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"cannot lock {path} ({_reason(e)})") from None
                holder = _pid_in(fd)
                raise UserError(f"{self.root} is in use by another selfreward process"
                                f"{f' (pid {holder})' if holder else ''}; wait for it to finish, or stop it "
                                "and run again") from None
            stale = _pid_in(fd)
            if stale and stale != os.getpid() and not _alive(stale):
                print(f"[lock] {path}: left by pid {stale}, which is gone; taken over", flush=True)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as e:
                raise UserError(f"cannot write to {self.root} ({_reason(e)}): {purpose} writes into the run "
                                "directory") from None
            yield
            try:
                os.ftruncate(fd, 0)  # released cleanly: a pid left in the file means its process was killed
            except OSError:
                pass
        finally:
            os.close(fd)  # releases the lock

    def require_writable(self, purpose: str) -> None:
        """A UserError in one line unless a file can be created in the run directory (tried, then removed)."""
        probe = self.root / f".write-test-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise UserError(f"cannot write to {self.root} ({_reason(e)}): {purpose}; make it writable or copy "
                            "the run elsewhere") from None

    def state(self, stage: Stage, now: dict[str, Any], previous: Stage | None,
              defaults: dict[str, Any] | None = None) -> str:
        """'todo', 'done', 'stale' (its input was recomputed) or 'changed: KEY was A, now B'; `now`: stage_config()
        of the stage's dependencies under the current config. `defaults`: the same under the default config; a key
        the marker lacks (added to selfreward after the stage ran) counts as its default, so a finished run resumes
        under a newer version that only added settings."""
        marker = self.marker(stage)
        if marker is None:
            return "todo"
        if previous is not None:
            prev = self.marker(previous)
            if prev is None or prev["token"] != marker["after"]:
                return "stale"
        recorded = {**{k: v for k, v in (defaults or {}).items() if k in now}, **marker["config"]}
        for key in sorted(set(now) | set(recorded)):
            if now.get(key) != recorded.get(key):
                return f"changed: {key} was {recorded.get(key)!r}, now {now.get(key)!r}"
        return "done"


def _missing_keys(cls: type, data: Any, prefix: str) -> list[str]:
    """Dotted keys of `cls` (a config dataclass) that `data` lacks; an optional section given as null counts as
    given (sft.lora: null)."""
    if not isinstance(data, dict):
        return []
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        if f.name not in data:
            missing.append(prefix + f.name)
            continue
        inner = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]) and data[f.name] is not None:
            missing += _missing_keys(inner[0], data[f.name], f"{prefix}{f.name}.")
    return missing


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _reason(e: OSError) -> str:
    return (e.strerror or str(e) or type(e).__name__).strip()


def require_done(rd: RunDir, stage: Stage) -> dict[str, Any]:
    marker = rd.marker(stage)
    if marker is None:
        raise UserError(f"{rd.root}: {stage} has not finished; run it first (selfreward run or selfreward "
                        f"{stage.name} {rd.root}{'' if stage.name == 'sft' else f' --iteration {stage.iteration}'})")
    return marker
