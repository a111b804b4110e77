"""Per-iteration summary from the done-markers: printed after a run and by `status`; `run` also saves it as
summary.json and summary.txt (`status` only reads: it works on a read-only run directory).

A marker's stats are whatever its stage returned; a value of an unexpected type is shown as it is, never a crash.
"""

from __future__ import annotations

from typing import Any

from selfreward.errors import UserError
from selfreward.records import read_json, write_json, write_text
from selfreward.rundir import EVAL_JUDGE, ITER_STAGES, RunDir, Stage

COLUMNS = [
    ("iter", "iteration"), ("prompts", "prompts_kept"), ("cands", "candidates"), ("cut off", "cut_off"),
    ("reward", "reward_source"), ("parse fail", "parse_failure_rate"), ("mean score", "mean_score"),
    ("scores 0/1/2/3/4/5", "score_histogram"), ("pairs", "pairs"), ("chosen len", "mean_chosen_chars"),
    ("rejected len", "mean_rejected_chars"), ("wall s", "wall_seconds"),
]
JUDGE_COLUMNS = [
    ("judge", "model"), ("reward", "source"), ("mode", "mode"), ("pairs", "pairs"),
    ("pairwise acc", "pairwise_accuracy"), ("shorter-preferred acc", "shorter_preferred_accuracy"),
    ("length corr", "length_correlation"), ("partial corr | length", "partial_correlation"),
    ("parse fail", "parse_failure_rate"), ("mean score", "mean_score"),
    ("length heuristic acc", "length_baseline_accuracy"),
]
MODEL_COLUMNS = [
    ("model", "model"), ("IFEval prompt strict", "prompt_strict"), ("loose", "prompt_loose"),
    ("instr strict", "inst_strict"), ("loose", "inst_loose"), ("held-back answer len", "heldout_mean_chars"),
    ("vs previous W/T/L", "vs_previous"), ("vs M1 W/T/L", "vs_M1"), ("judge on LLMBar", "judge_check"),
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
            # the judge's "cut_off" counts the cut-off answers it left unscored (none unless sample.require_eos);
            # the column is the sample stage's: answers that reached max_new_tokens
            skip = {"wall_seconds", "iteration"} | ({"cut_off"} if name == "judge" else set())
            row.update({k: v for k, v in stats.items() if k not in skip})
            row["wall_seconds"] = round(row["wall_seconds"] + _number(stats.get("wall_seconds")), 1)
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
        row.update({"vs_previous": versus.get(f"vs_M{t - 1}"), "vs_M1": versus.get("vs_M1") if t > 2 else None,
                    "judge_check": versus.get("judge_check")})
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
    if key == "score_shares" and isinstance(value, dict):
        return "/".join(f"{100 * _number(value.get(str(s), 0)):.0f}" for s in range(6))
    if key in ("top_score_share", "judge_pair_share") and _is_number(value):
        return f"{100 * value:.1f}%"
    if key == "score_histogram" and isinstance(value, dict):
        return "/".join(_cell(value.get(str(s), 0)) for s in range(6))
    if key in ("parse_failure_rate", "pairwise_accuracy", "shorter_preferred_accuracy", "length_baseline_accuracy",
               "prompt_strict", "prompt_loose", "inst_strict", "inst_loose") and _is_number(value):
        return f"{100 * value:.1f}%"
    return _cell(value)


def _cell(value: Any) -> str:
    """One table cell: a number as %g, anything else as text on one line."""
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if text.isprintable() else repr(text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float:
    return float(value) if _is_number(value) and value == value and abs(value) != float("inf") else 0.0


def summary(rd: RunDir, iterations: int) -> tuple[str, dict[str, Any]]:
    """(the text `status` prints, the mapping summary.json holds). Reads only."""
    sft = rd.marker(Stage("sft", 0))
    rows = iteration_rows(rd, iterations)
    judges = judge_rows(rd, iterations)
    models = model_rows(rd, iterations)
    memory = memory_rows(rd)
    data = {"sft": sft["stats"] if sft else None, "iterations": rows, "judge_agreement": judges, "models": models,
            "memory": memory}
    head = f"SFT: {_brief_sft(sft['stats'])}\n" if sft else "SFT: not done\n"
    text = head + table(rows) + _meta_text(rows)
    if judges:
        text += ("\n\nJudge agreement with human rankings (data.eft_eval), beside the length heuristic:\n"
                 + table(judges, JUDGE_COLUMNS))
    if models:
        text += ("\n\nEach model on IFEval and head to head on the held-back prompts (wins/ties/losses, both orders; "
                 "p = mean P(this model's answer is better) by forced choice), and the judge of its head-to-head on "
                 "LLMBar Natural beside the length heuristic:\n" + table(models, MODEL_COLUMNS))
    if memory:
        columns = MEMORY_COLUMNS + ([("launcher", "launcher_rss_mb")] if any("launcher_rss_mb" in m for m in memory)
                                    else [])
        text += ("\n\nMemory per stage (MiB resident: the peak while it ran; before it and after it, once it had "
                 "released what it loaded" + ("; launcher: the run's own process, beside a stage that ran in a "
                                              "process of its own" if len(columns) > len(MEMORY_COLUMNS) else "")
                 + "):\n" + table(memory, columns))
    return text, data


MEMORY_COLUMNS = [("stage", "stage"), ("peak", "peak_rss_mb"), ("before", "rss_before_mb"),
                  ("after", "rss_after_mb")]


def memory_rows(rd: RunDir) -> list[dict[str, Any]]:
    """Each stage's memory as its last run recorded it in manifest.json ("stages", see pipeline.record_usage), in
    the order the stages first ran; [] for a run without those records."""
    path = rd.root / "manifest.json"
    try:
        stages = read_json(path).get("stages", {}) if path.is_file() else {}
    except (OSError, ValueError, AttributeError, UserError):
        return []
    if not isinstance(stages, dict):
        return []
    return [{"stage": key, **{k: v for k, v in usage.items() if k != "time"}}
            for key, usage in stages.items() if isinstance(usage, dict)]


SCORE_COLUMNS = [
    ("iter", "iteration"), ("valid scores", "valid_scores"), ("% of scores 0/1/2/3/4/5", "score_shares"),
    ("entropy bits", "score_entropy"), ("top score", "top_score"), ("its share", "top_score_share"),
]
META_COLUMNS = [
    ("iter", "iteration"), ("answers meta-judged", "meta_answers"), ("comparisons", "meta_comparisons"),
    ("unread", "meta_unread"), ("verdicts", "meta_verdict"), ("judge pairs built", "judge_pairs_built"),
    ("actor pairs", "actor_pairs"), ("judge pairs in DPO", "judge_pairs"), ("judge share", "judge_pair_share"),
]


def _meta_text(rows: list[dict[str, Any]]) -> str:
    """The judge's score distribution per iteration, a collapse warning per iteration that had one, and with
    meta-judging (Meta-Rewarding) its counts and the mix of pairs DPO trained on."""
    text = ""
    if any("score_entropy" in r for r in rows):
        text += ("\n\nJudge score distribution (every valid judgment's score; entropy in bits: 2.585 when all six "
                 "scores are equally common, 0 when one score is all):\n" + table(rows, SCORE_COLUMNS))
    warnings = [f"  iteration {r['iteration']}: {_cell(r['collapse'])}" for r in rows if r.get("collapse")]
    if warnings:
        text += "\n\nJUDGE COLLAPSE:\n" + "\n".join(warnings)
    if any("meta_answers" in r or "actor_pairs" in r for r in rows):
        text += ("\n\nMeta-Rewarding: answers whose judgments disagree, their judgments rated by the model as "
                 "meta-judge (both orders); judge pairs beside the actor pairs in DPO:\n" + table(rows, META_COLUMNS))
    return text


def summary_text(rd: RunDir, iterations: int) -> str:
    return summary(rd, iterations)[0]


def write_summary(rd: RunDir, iterations: int) -> str:
    """The summary text, also saved as summary.json and summary.txt."""
    text, data = summary(rd, iterations)
    write_json(rd.root / "summary.json", data)
    write_text(rd.root / "summary.txt", text + "\n")
    return text


def _brief_sft(stats: dict) -> str:
    def get(key: str) -> str:
        return _cell(stats.get(key, "?"))

    return (f"{get('examples')} examples ({get('dropped_too_long')} too long, dropped), {get('steps')} steps, "
            f"loss {get('train_loss')}, {_number(stats.get('wall_seconds')):.0f}s")
