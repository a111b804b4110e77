"""One PNG per report section, drawn from the results dict alone (matplotlib's Agg backend: no window, no
display needed). Each function returns the PNG bytes, or None when its section has nothing to draw."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)
from matplotlib.patches import Patch  # noqa: E402

COLORS = {"judge": "#1f77b4", "length": "#ff7f0e", "random": "#9e9e9e", "chosen": "#2ca02c",
          "rejected": "#d62728", "answers": "#1f77b4", "win": "#2ca02c", "tie": "#9e9e9e", "loss": "#d62728"}


def all_plots(results: dict[str, Any]) -> dict[str, bytes]:
    drawn = {"scores": score_plot(results["iterations"]), "pair_lengths": pair_length_plot(results["iterations"]),
             "answer_lengths": answer_length_plot(results["iterations"]),
             "judge_agreement": judge_agreement_plot(results["judge_agreement"]),
             "win_rates": win_rate_plot(results["win_rates"]), "ifeval": ifeval_plot(results["ifeval"]),
             "suites": suite_plot(results["suites"])}
    return {name: png for name, png in drawn.items() if png is not None}


def score_plot(iterations: list[dict]) -> bytes | None:
    """Share of candidates per (rounded) judge score, one bar group per iteration; parse failures beside."""
    its = [it for it in iterations if it["judge"]]
    if not its:
        return None
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    hist_ax, fail_ax = fig.subplots(1, 2, width_ratios=[3, 1])
    width = 0.8 / len(its)
    for i, it in enumerate(its):
        counts = [it["judge"]["score_histogram"][str(s)] for s in range(6)]
        total = sum(counts) or 1
        hist_ax.bar([s - 0.4 + width * (i + 0.5) for s in range(6)], [c / total for c in counts], width,
                    label=f"iteration {it['iteration']} (M{it['iteration']} judging, {sum(counts)} scored)")
    hist_ax.set(xticks=range(6), xlabel="candidate score (mean of the judgments, rounded half up)",
                ylabel="share of scored candidates", title="Judge score distribution")
    hist_ax.legend(fontsize=8)
    rates = [it["judge"]["parse_failure_rate"] or 0.0 for it in its]
    bars = fail_ax.bar([str(it["iteration"]) for it in its], rates, color=COLORS["rejected"])
    fail_ax.bar_label(bars, labels=[f"{100 * r:.1f}%" for r in rates], fontsize=8)
    fail_ax.set(ylim=(0, max(1.0, max(rates) * 1.15)), xlabel="iteration", ylabel="share of judgments",
                title="Parse failures")
    return _png(fig)


def pair_length_plot(iterations: list[dict]) -> bytes | None:
    """Chosen vs rejected length per iteration: a judge that rewards length shows up here first."""
    its = [it for it in iterations if it["pairs"] and it["pairs"]["n"]]
    if not its:
        return None
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.subplots()
    for side, offset in (("chosen", -0.2), ("rejected", 0.2)):
        boxes = [_box(it["pairs"][f"{side}_chars"]) for it in its]
        ax.bxp(boxes, positions=[i + offset for i in range(len(its))], widths=0.35, showmeans=True,
               patch_artist=True, boxprops={"facecolor": COLORS[side], "alpha": 0.6})
    ax.set_xticks(range(len(its)), [f"iteration {it['iteration']}\n{_count(it['pairs']['n'], 'pair')}, "
                                    f"chosen longer in {100 * it['pairs']['chosen_longer_rate']:.0f}%" for it in its])
    ax.set(ylabel="characters", title="Length of chosen vs rejected responses (box: quartiles, ▲ mean)")
    ax.legend(handles=[Patch(color=COLORS[s], alpha=0.6, label=s) for s in ("chosen", "rejected")])
    return _png(fig)


def answer_length_plot(iterations: list[dict]) -> bytes | None:
    its = [it for it in iterations if it["answer_chars"]]
    if not its:
        return None
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.bxp([_box(it["answer_chars"]) for it in its], positions=range(len(its)), widths=0.5, showmeans=True,
           patch_artist=True, boxprops={"facecolor": COLORS["answers"], "alpha": 0.5})
    ax.set_xticks(range(len(its)), [f"iteration {it['iteration']}: M{it['iteration']}\n"
                                    f"{_count(it['answer_chars']['n'], 'answer')}" for it in its])
    ax.set(ylabel="characters", title="Length of the sampled answers (box: quartiles, ▲ mean)")
    return _png(fig)


def judge_agreement_plot(rows: list[dict]) -> bytes | None:
    """The judge's agreement with people, always beside the length heuristic and random scores."""
    if not rows:
        return None
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("pairwise_accuracy", "shorter_preferred_accuracy"),
                              ("Pairwise accuracy", "Accuracy where people preferred the shorter answer")):
        _grouped_bars(ax, [r["model"] for r in rows], {
            name: [r[part][key] for r in rows] for part, name in
            (("judge", "judge"), ("length", "length heuristic"), ("random", "random"))})
        ax.axhline(0.5, color="black", lw=0.8, ls="--")
        ax.set(ylim=(0, 1.2), title=title, xlabel="model as judge")
        ax.legend(fontsize=8, loc="upper center", ncol=3)
    axes[0].set_ylabel("accuracy vs human rankings")
    return _png(fig)


def win_rate_plot(rows: list[dict]) -> bytes | None:
    rows = [r for r in rows if r["n"]]
    if not rows:
        return None
    fig = Figure(figsize=(10, 1.2 + 0.9 * len(rows)), layout="constrained")
    ax = fig.subplots()
    height = 0.25
    for j, kind in enumerate(("win", "tie", "loss")):
        ys = [i + (j - 1) * height for i in range(len(rows))]  # win on top: the y axis is inverted
        rates = [r[f"{kind}_rate"] for r in rows]
        err = [[rate - r["ci"][f"{kind}_rate"][0] for rate, r in zip(rates, rows)],
               [r["ci"][f"{kind}_rate"][1] - rate for rate, r in zip(rates, rows)]]
        ax.barh(ys, rates, height, xerr=err, capsize=3, color=COLORS[kind], label=kind)
    ax.set_yticks(range(len(rows)), [f"{r['a']} vs {r['b']}\n(n={r['n']})" for r in rows])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of prompts, from the first model's view (bars: 95% interval)",
           title="Head-to-head win rates")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def ifeval_plot(rows: list[dict]) -> bytes | None:
    if not rows:
        return None
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax = fig.subplots()
    for key in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose"):
        ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], marker="o", label=key.replace("_", " "))
    ax.set_xticks([r["iteration"] for r in rows], [r["model"] for r in rows])
    ax.set(ylim=(0, 1), xlabel="model", ylabel="accuracy", title="IFEval")
    ax.legend(fontsize=8)
    return _png(fig)


def suite_plot(suites: dict[str, list[dict]]) -> bytes | None:
    """One panel per suite: their scores are on different scales."""
    scored = {name: [r for r in rows if r["score"] is not None] for name, rows in sorted(suites.items())}
    scored = {name: rows for name, rows in scored.items() if rows}
    if not scored:
        return None
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    axes = fig.subplots(1, len(scored), squeeze=False)[0]
    for ax, (name, rows) in zip(axes, scored.items()):
        xs, scores = [r["iteration"] for r in rows], [r["score"] for r in rows]
        ax.plot(xs, scores, marker="o")
        for x, score in zip(xs, scores):
            ax.annotate(f"{score:g}", (x, score), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xticks(xs, [r["model"] for r in rows])
        ax.set(title=name, xlabel="model", ylabel="score")
        if min(scores) >= 0:  # from zero, so a small change does not look like a big one
            ax.set_ylim(0, max(scores) * 1.15 or 1)
    return _png(fig)


def _grouped_bars(ax, labels: list[str], series: dict[str, list[float | None]]) -> None:
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [x - 0.4 + width * (i + 0.5) for x in range(len(labels))]
        bars = ax.bar(xs, [v or 0.0 for v in values], width, label=name, color=COLORS[name.split()[0]])
        ax.bar_label(bars, labels=["n/a" if v is None else f"{100 * v:.0f}" for v in values], fontsize=7)
    ax.set_xticks(range(len(labels)), labels)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _box(stats: dict) -> dict:
    return {"whislo": stats["min"], "q1": stats["q1"], "med": stats["median"], "q3": stats["q3"],
            "whishi": stats["max"], "mean": stats["mean"], "fliers": []}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # no Software tag: it would carry matplotlib's web address into the report
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()
