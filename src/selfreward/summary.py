"""Per-iteration summary from the done-markers: printed after a run, by `status`, and saved as summary.json."""

from __future__ import annotations

from typing import Any

from selfreward.records import write_json
from selfreward.rundir import ITER_STAGES, RunDir, Stage

COLUMNS = [
    ("iter", "iteration"), ("prompts", "prompts_kept"), ("cands", "candidates"),
    ("parse fail", "parse_failure_rate"), ("mean score", "mean_score"), ("pairs", "pairs"),
    ("chosen len", "mean_chosen_chars"), ("rejected len", "mean_rejected_chars"), ("wall s", "wall_seconds"),
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


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[h for h, _ in COLUMNS]]
    for row in rows:
        cells.append([_fmt(key, row.get(key)) for _, key in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "parse_failure_rate":
        return f"{100 * value:.1f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_summary(rd: RunDir, iterations: int) -> str:
    sft = rd.marker(Stage("sft", 0))
    rows = iteration_rows(rd, iterations)
    write_json(rd.root / "summary.json", {"sft": sft["stats"] if sft else None, "iterations": rows})
    head = f"SFT: {_brief_sft(sft['stats'])}\n" if sft else "SFT: not done\n"
    text = head + table(rows)
    (rd.root / "summary.txt").write_text(text + "\n")
    return text


def _brief_sft(stats: dict) -> str:
    return (f"{stats['examples']} examples ({stats['dropped_too_long']} too long, dropped), {stats['steps']} steps, "
            f"loss {stats['train_loss']}, {stats['wall_seconds']:.0f}s")
