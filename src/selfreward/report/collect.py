"""Gather what a report shows from a run directory into one JSON-ready dict (written as RUN_DIR/results.json).

A stage's numbers are read only once its done-marker exists, the rule `run` itself uses, so a run in progress
reports what has finished. The keys are documented in `selfreward.report`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from selfreward.errors import UserError
from selfreward.records import check_fields, read_json, read_jsonl
from selfreward.rundir import ITER_STAGES, RunDir, Stage

SCHEMA = 1
NUM = (int, float)
OPT_NUM = (int, float, type(None))
DPO_KEYS = ["pairs_used", "steps", "train_loss", "actor_pairs", "judge_pairs", "judge_pair_share"]
META_KEYS = ["meta_answers", "meta_comparisons", "meta_unread", "judge_pairs_built", "judge_pair_share_max"]
JUDGE_METRICS = ["pairs", "pairwise_accuracy", "shorter_preferred_accuracy", "length_correlation", "exact_match",
                 "top1", "spearman", "kendall", "parse_failure_rate"]
IFEVAL_KEYS = ["prompt_strict", "prompt_loose", "inst_strict", "inst_loose"]
COUNT_KEYS = ["n", "wins", "ties", "losses"]
RATE_KEYS = ["win_rate", "tie_rate", "loss_rate"]


def collect(run_dir: Path) -> dict[str, Any]:
    rd = RunDir(run_dir)
    if not rd.root.is_dir():
        raise UserError(f"run directory not found: {rd.root}")
    config = rd.config_mapping()  # the checks `status` and `run` apply; no config.yaml: not a run directory
    manifest = _load_json(rd.root / "manifest.json") if (rd.root / "manifest.json").is_file() else None
    sft = rd.marker(Stage("sft", 0))
    results = {
        "schema": SCHEMA, "run_dir": str(rd.root), "config": config,
        "versions": manifest.get("versions") if manifest and isinstance(manifest.get("versions"), dict) else None,
        "sft": sft["stats"] if sft else None,
        "iterations": [_iteration(rd, t) for t in range(1, _iterations(rd, config) + 1)],
        "judge_agreement": [_judge_eval(p, t) for p, t in _evals(rd, r"judge-M(\d+)")],
        "ifeval": [_ifeval(p, t) for p, t in _evals(rd, r"ifeval-M(\d+)")],
        "suites": _suites(rd),
        "win_rates": [_compare(p, _judge_checks(rd)) for p in sorted(
            (p for p in rd.eval_dir.glob("compare-*.json") if _pair_key(p)), key=_pair_key)],
    }
    results["missing"] = _missing(results)
    return results


# run stages -----------------------------------------------------------------------------------------------
def _iterations(rd: RunDir, config: dict | None) -> int:
    if config and isinstance(config.get("iterations"), int):
        return config["iterations"]
    found = [int(m.group(1)) for p in rd.root.glob("iter*") if (m := re.fullmatch(r"iter(\d+)", p.name))]
    return max(found, default=0)


def _iteration(rd: RunDir, t: int) -> dict[str, Any]:
    markers = {name: rd.marker(Stage(name, t)) for name in ITER_STAGES}
    stats = {name: m["stats"] for name, m in markers.items() if m is not None}
    gen, judge, dpo = stats.get("gen-prompts", {}), stats.get("judge"), stats.get("dpo")
    meta = stats.get("meta-judge")
    return {
        "iteration": t, "model": f"M{t}", "stages_done": list(stats),
        "prompts_kept": _num(gen.get("prompts_kept")), "prompts_generated": _num(gen.get("prompts_generated")),
        "judge": _judge_stats(judge) if judge is not None else None,
        "score_distribution": _distribution(judge) if judge is not None else None,
        "answer_chars": _answer_lengths(rd, t) if "sample" in stats else None,
        "pairs": _pair_lengths(rd, t) if "pairs" in stats else None,
        "dpo": {k: _num(dpo.get(k)) for k in DPO_KEYS} if dpo is not None else None,
        "meta": {k: _num(meta.get(k)) for k in META_KEYS} if meta is not None else None,
        "wall_seconds": round(sum(_num(s.get("wall_seconds")) or 0.0 for s in stats.values()), 1),
    }


def _judge_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """A marker's stats are the stage's own output, but a report must not trip over a damaged one: numbers that
    are not numbers read as missing."""
    hist = stats.get("score_histogram")
    hist = hist if isinstance(hist, dict) else {}
    mode = stats.get("judge_mode")
    return {"judge_mode": mode if isinstance(mode, str) else None, "judgments": _num(stats.get("judgments")),
            "parse_failures": _num(stats.get("parse_failures")),
            "parse_failure_rate": _num(stats.get("parse_failure_rate")),
            "unscored_candidates": _num(stats.get("unscored_candidates")), "mean_score": _num(stats.get("mean_score")),
            "score_histogram": {str(s): _num(hist.get(str(s))) or 0 for s in range(6)}}


def _distribution(stats: dict[str, Any]) -> dict[str, Any] | None:
    """The collapse guard's part of the judge stats (stages.meta_judge.collapse_guard); None in older runs."""
    shares = stats.get("score_shares")
    if not isinstance(shares, dict):
        return None
    collapse = stats.get("collapse")
    return {"valid_scores": _num(stats.get("valid_scores")),
            "score_shares": {str(s): _num(shares.get(str(s))) or 0 for s in range(6)},
            "score_entropy": _num(stats.get("score_entropy")), "top_score": _num(stats.get("top_score")),
            "top_score_share": _num(stats.get("top_score_share")),
            "collapse": collapse if isinstance(collapse, str) else None}


def _num(x: Any) -> int | float | None:
    """x if it is a finite number, else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return x if isinstance(x, int) or np.isfinite(x) else None


def _answer_lengths(rd: RunDir, t: int) -> dict[str, Any]:
    path = rd.artifact(t, "candidates.jsonl")
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        check_fields(row, {"response": str}, f"{path} row {i}")
    return length_stats([len(r["response"]) for r in rows])


def _pair_lengths(rd: RunDir, t: int) -> dict[str, Any]:
    path = rd.artifact(t, "pairs.jsonl")
    rows = read_jsonl(path)
    spec = {"chosen": str, "rejected": str, "chosen_score": NUM, "rejected_score": NUM}
    for i, row in enumerate(rows, 1):
        check_fields(row, spec, f"{path} row {i}")
    chosen, rejected = [len(r["chosen"]) for r in rows], [len(r["rejected"]) for r in rows]
    gaps = [r["chosen_score"] - r["rejected_score"] for r in rows]
    return {"n": len(rows), "chosen_chars": length_stats(chosen), "rejected_chars": length_stats(rejected),
            "chosen_longer_rate": _r(np.mean([c > r for c, r in zip(chosen, rejected)])) if rows else None,
            "mean_score_gap": _r(np.mean(gaps)) if rows else None}


def length_stats(lengths: list[int]) -> dict[str, Any] | None:
    """n, mean and the five numbers of a box plot (quartiles by linear interpolation), in characters."""
    if not lengths:
        return None
    q = np.percentile(lengths, [0, 25, 50, 75, 100])
    return {"n": len(lengths), "mean": _r(np.mean(lengths), 1), "min": int(q[0]), "q1": _r(q[1], 1),
            "median": _r(q[2], 1), "q3": _r(q[3], 1), "max": int(q[4])}


# evaluations ------------------------------------------------------------------------------------------------
def _evals(rd: RunDir, pattern: str) -> list[tuple[Path, int]]:
    """(path, t) of eval/<pattern>.json, by t; done-markers and judgments beside them do not match."""
    found = [(p, int(m.group(1))) for p in rd.eval_dir.glob("*.json")
             if (m := re.fullmatch(pattern + r"\.json", p.name))]
    return sorted(found, key=lambda x: x[1])


def _judge_eval(path: Path, t: int) -> dict[str, Any]:
    d = _load_json(path)
    check_fields(d, {"judge": dict, "length": dict, "random": dict}, str(path))
    for part in ("judge", "length", "random"):
        check_fields(d[part], {"pairwise_accuracy": OPT_NUM}, f"{path} {part}")
    return {"model": f"M{t}", "iteration": t, "mode": d.get("mode"), "pairs": d["judge"].get("pairs"),
            **{part: {k: _r(d[part].get(k)) for k in JUDGE_METRICS} for part in ("judge", "length", "random")}}


def _ifeval(path: Path, t: int) -> dict[str, Any]:
    d = _load_json(path)
    check_fields(d, {k: NUM for k in IFEVAL_KEYS}, str(path))
    return {"model": f"M{t}", "iteration": t, **{k: _r(d[k]) for k in IFEVAL_KEYS},
            "n_prompts": d.get("n_prompts"), "mean_length_chars": _r(d.get("mean_length_chars"), 1)}


def _suites(rd: RunDir) -> dict[str, list[dict[str, Any]]]:
    suites: dict[str, list[dict[str, Any]]] = {}
    for path, name, t in sorted(_suite_files(rd), key=lambda x: (x[1], x[2])):
        d = _load_json(path)
        check_fields(d, {"score": OPT_NUM}, str(path))
        suites.setdefault(name, []).append({"model": f"M{t}", "iteration": t, "score": _r(d["score"])})
    return suites


def _suite_files(rd: RunDir) -> list[tuple[Path, str, int]]:
    return [(p, m.group(1), int(m.group(2))) for p in rd.eval_dir.glob("suite-*.json")
            if (m := re.fullmatch(r"suite-(.+)-M(\d+)\.json", p.name))]


def _pair_key(path: Path) -> tuple[int, int] | None:
    m = re.fullmatch(r"compare-M(\d+)-vs-M(\d+)\.json", path.name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _compare(path: Path, checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    d = _load_json(path)
    # no prompts compared: rates and intervals are null (compare.tally)
    check_fields(d, {**{k: int for k in COUNT_KEYS}, **{k: OPT_NUM for k in RATE_KEYS}, "ci": (dict, type(None))},
                 str(path))
    ci = d["ci"] or {}
    for k in RATE_KEYS if ci else []:
        check_fields(ci, {k: list}, f"{path} ci")
        if len(ci[k]) != 2 or any(isinstance(x, bool) or not isinstance(x, NUM) for x in ci[k]):
            raise UserError(f"{path}: field 'ci.{k}' must be a list of two numbers [low, high]")
    a, b = _pair_key(path)
    bias = d.get("position_bias") if isinstance(d.get("position_bias"), dict) else {}
    method = d.get("method") if isinstance(d.get("method"), str) else None
    return {"a": f"M{a}", "b": f"M{b}", "judge": d.get("judge"), "prompts": d.get("prompts"),
            **{k: d[k] for k in COUNT_KEYS}, **{k: _r(d[k]) for k in RATE_KEYS},
            "ci": {k: [_r(x) for x in ci[k]] if ci else None for k in RATE_KEYS},
            "mean_len_a": _r(d.get("mean_len_a"), 1), "mean_len_b": _r(d.get("mean_len_b"), 1),
            "parse_failures": d.get("parse_failures"),  # unparseable verdicts, each counted as a tie
            # older files lack these: null. method: "forced choice" | "generated verdicts" (selfreward.compare)
            "method": method, "margin": _r(d.get("margin")), "mean_p_a": _r(d.get("mean_p_a")),
            "unreadable": _num(d.get("unreadable")),
            "position_bias": {"ab": _r(bias.get("ab")), "ba": _r(bias.get("ba"))} if bias else None,
            "judge_check": checks.get(d.get("judge")) if isinstance(d.get("judge"), str) else None}


def _judge_checks(rd: RunDir) -> dict[str, dict[str, Any]]:
    """judge name -> its check on LLMBar Natural (eval/compare-M<t>.judge-check.json): pairs, method, and the
    accuracy of the judge, of the length heuristic and of a random judge on the same pairs."""
    checks = {}
    for path in sorted(rd.eval_dir.glob("compare-M*.judge-check.json")):
        d = _load_json(path)
        check_fields(d, {"judge": str, "pairs": int, "judge_accuracy": OPT_NUM, "length_accuracy": OPT_NUM},
                     str(path))
        checks[d["judge"]] = {"pairs": d["pairs"], "method": d.get("method"), "data": d.get("data"),
                              **{k: _r(d.get(k)) for k in ("judge_accuracy", "length_accuracy", "random_accuracy",
                                                           "mean_p_correct")},
                              "unreadable": _num(d.get("unreadable"))}
    return checks


# what is missing, and why ---------------------------------------------------------------------------------
def _missing(results: dict[str, Any]) -> dict[str, str]:
    cfg = results["config"] or {}
    why = {
        "config": "no config.yaml in the run directory",
        "sft": "the sft stage has not finished",
        "iterations": "no self-rewarding iteration has finished a stage yet",
        "judge_agreement": ("switched off (judge_eval.max_prompts = 0)"
                            if (cfg.get("judge_eval") or {}).get("max_prompts") == 0
                            else "no eval/judge-M<t>.json yet: no eval-judge stage has finished"),
        "ifeval": "no eval/ifeval-M<t>.json: IFEval is off for this run or has not run yet",
        "suites": "no eval/suite-<name>-M<t>.json: no benchmark suite is on for this run or none has run yet",
        "win_rates": "no eval/compare-M<a>-vs-M<b>.json: no pairwise comparison is on or none has run yet",
    }
    empty = {k for k in why if not results[k]}
    if not any(it["stages_done"] for it in results["iterations"]):
        empty.add("iterations")
    return {k: why[k] for k in why if k in empty}


# files -----------------------------------------------------------------------------------------------------
def _load_json(path: Path) -> dict[str, Any]:
    d = read_json(path)
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a JSON object")
    return d


def _r(x: Any, digits: int = 4) -> Any:
    if x is None or isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        return None  # an optional number that is not one (the required ones are checked where they are read)
    return round(float(x), digits)
