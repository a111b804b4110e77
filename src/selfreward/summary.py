"""Per-iteration summary from the done-markers: printed after a run, by `status`, and saved as summary.json."""

from __future__ import annotations

from typing import Any

from selfreward.records import write_json
from selfreward.rundir import EVAL_JUDGE, ITER_STAGES, RunDir, Stage

COLUMNS = [
    ("iter", "iteration"), ("prompts", "prompts_kept"), ("cands", "candidates"),
    ("parse fail", "parse_failure_rate"), ("mean score", "mean_score"), ("scores 0/1/2/3/4/5", "score_histogram"),
    ("pairs", "pairs"), ("chosen len", "mean_chosen_chars"), ("rejected len", "mean_rejected_chars"),
    ("wall s", "wall_seconds"),
]
JUDGE_COLUMNS = [
    ("judge", "model"), ("mode", "mode"), ("pairs", "pairs"), ("pairwise acc", "pairwise_accuracy"),
    ("shorter-preferred acc", "shorter_preferred_accuracy"), ("length corr", "length_correlation"),
    ("parse fail", "parse_failure_rate"), ("mean score", "mean_score"),
    ("length heuristic acc", "length_baseline_accuracy"),
]
MODEL_COLUMNS = [
    ("model", "model"), ("IFEval prompt strict", "prompt_strict"), ("loose", "prompt_loose"),
    ("instr strict", "inst_strict"), ("loose", "inst_loose"), ("held-back answer len", "heldout_mean_chars"),
    ("vs previous W/T/L", "vs_previous"), ("vs M1 W/T/L", "vs_M1"),
]


def iteration_rows(rd: RunDir, iterations: int) -> list[dict[str, Any]]:
    rows = []
    for t in range(1, iterations + 1):
        row: dict[str, Any] = {"iteration": t, "wall_seconds": 0.0}
        for name in ITER_STAGES:
            marker = rd.marker(Stage(name, t))
            if marker is None:
                continue
            stats = marker["stats"]
            row.update({k: v for k, v in stats.items() if k != "wall_seconds"})
            row["wall_seconds"] = round(row["wall_seconds"] + stats.get("wall_seconds", 0.0), 1)
        rows.append(row)
    return rows


def judge_rows(rd: RunDir, iterations: int) -> list[dict[str, Any]]:
    """Judge agreement of M0 (base), M1, ... as far as evaluated."""
    markers = [rd.marker(Stage(EVAL_JUDGE, t)) for t in range(iterations + 2)]
    return [m["stats"] for m in markers if m is not None]


def model_rows(rd: RunDir, iterations: int) -> list[dict[str, Any]]:
    """Benchmarks and head-to-heads of M1, M2, ... as far as evaluated."""
    rows = []
    for t in range(1, iterations + 2):
        marker, head = rd.marker(Stage("eval", t)), rd.marker(Stage("compare", t))
        if marker is None:
            continue
        row = {k: v for k, v in marker["stats"].items() if k != "wall_seconds"}
        versus = head["stats"] if head else {}
        row.update({"vs_previous": versus.get(f"vs_M{t - 1}"), "vs_M1": versus.get("vs_M1") if t > 2 else None})
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]] = COLUMNS) -> str:
    cells = [[h for h, _ in columns]]
    for row in rows:
        cells.append([_fmt(key, row.get(key)) for _, key in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "score_histogram":
        return "/".join(str(value.get(str(s), 0)) for s in range(6))
    if key in ("parse_failure_rate", "pairwise_accuracy", "shorter_preferred_accuracy", "length_baseline_accuracy",
               "prompt_strict", "prompt_loose", "inst_strict", "inst_loose"):
        return f"{100 * value:.1f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_summary(rd: RunDir, iterations: int) -> str:
    sft = rd.marker(Stage("sft", 0))
    rows = iteration_rows(rd, iterations)
    judges = judge_rows(rd, iterations)
    models = model_rows(rd, iterations)
    write_json(rd.root / "summary.json", {"sft": sft["stats"] if sft else None, "iterations": rows,
                                          "judge_agreement": judges, "models": models})
    head = f"SFT: {_brief_sft(sft['stats'])}\n" if sft else "SFT: not done\n"
    text = head + table(rows)
    if judges:
        text += ("\n\nJudge agreement with human rankings (data.eft_eval), beside the length heuristic:\n"
                 + table(judges, JUDGE_COLUMNS))
    if models:
        text += ("\n\nEach model on IFEval and head to head on the held-back prompts (wins/ties/losses, both orders):\n"
                 + table(models, MODEL_COLUMNS))
    (rd.root / "summary.txt").write_text(text + "\n")
    return text


def _brief_sft(stats: dict) -> str:
    return (f"{stats['examples']} examples ({stats['dropped_too_long']} too long, dropped), {stats['steps']} steps, "
            f"loss {stats['train_loss']}, {stats['wall_seconds']:.0f}s")
