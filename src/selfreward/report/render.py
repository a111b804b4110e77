"""report.md and report.html from the results dict and the plots: the same sections, tables and numbers in both.

The HTML is one self-contained file (inline CSS, plots as base64 PNG, no script, no external address), so it
opens offline and can be mailed around.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

Table = tuple[list[str], list[list[str]]]


@dataclass(frozen=True)
class Section:
    title: str
    plot: str | None
    table: Callable[[dict], Table | None]
    why_missing: Callable[[dict], str]
    note: str = ""


def _iteration_why(stage: str) -> Callable[[dict], str]:
    return lambda results: results["missing"].get("iterations") or f"no {stage} stage has finished yet"


def _eval_why(key: str) -> Callable[[dict], str]:
    return lambda results: results["missing"].get(key, "")


# tables ----------------------------------------------------------------------------------------------------
def progress_table(r: dict) -> Table | None:
    rows = [[str(it["iteration"]), ", ".join(it["stages_done"]) or "-", _v(it["prompts_kept"]),
             _v(it["answer_chars"] and it["answer_chars"]["n"]), _v(it["pairs"] and it["pairs"]["n"]),
             _v(it["dpo"] and it["dpo"]["train_loss"]), _v(it["wall_seconds"])] for it in r["iterations"]]
    return (["iter", "stages done", "prompts", "answers", "pairs", "DPO loss", "wall s"], rows) if rows else None


def score_table(r: dict) -> Table | None:
    rows = [[str(it["iteration"]), _v(j["judge_mode"]), _v(j["judgments"]), _pct(j["parse_failure_rate"]),
             _v(j["unscored_candidates"]), _v(j["mean_score"]),
             "/".join(str(j["score_histogram"][str(s)]) for s in range(6))]
            for it in r["iterations"] if (j := it["judge"])]
    return (["iter", "mode", "judgments", "parse fail", "unscored", "mean score", "scores 0/1/2/3/4/5"],
            rows) if rows else None


def meta_table(r: dict) -> Table | None:
    """Per iteration t, about M_t (the model that answered, judged and meta-judged in it): its judge's agreement with
    humans, its score distribution and collapse flag, the judge pairs of Meta-Rewarding, IFEval, answer length."""
    agree = {a["iteration"]: a["judge"] for a in r["judge_agreement"]}
    ifeval = {x["iteration"]: x for x in r["ifeval"]}
    rows = []
    for it in r["iterations"]:
        j, t = it.get("score_distribution") or {}, it["iteration"]
        if it["judge"] is None and not it.get("meta") and t not in agree:
            continue
        shares, dpo, meta, a = j.get("score_shares"), it["dpo"] or {}, it.get("meta") or {}, agree.get(t) or {}
        flag = (f"COLLAPSE: {_v(j.get('top_score'))} is {_pct(j.get('top_score_share'))}" if j.get("collapse") else
                "no" if j.get("top_score_share") is not None else "-")
        rows.append([str(t), it["model"], _pct(a.get("pairwise_accuracy")), _pct(a.get("shorter_preferred_accuracy")),
                     "/".join(f"{100 * shares[str(s)]:.0f}" for s in range(6)) if shares else "-",
                     _v(j.get("score_entropy")), flag, _v(meta.get("judge_pairs_built")), _v(dpo.get("judge_pairs")),
                     _pct(dpo.get("judge_pair_share")), _pct((ifeval.get(t) or {}).get("prompt_strict")),
                     _v(it["answer_chars"] and it["answer_chars"]["mean"])])
    return (["iter", "model", "judge pairwise acc", "shorter-pref acc", "% of scores 0/1/2/3/4/5", "entropy bits",
             "collapse", "judge pairs built", "judge pairs in DPO", "judge share", "IFEval prompt strict",
             "answer len"], rows) if rows else None


def pair_table(r: dict) -> Table | None:
    rows = [[str(it["iteration"]), str(p["n"]), _v(p["chosen_chars"] and p["chosen_chars"]["mean"]),
             _v(p["rejected_chars"] and p["rejected_chars"]["mean"]),
             _v(p["chosen_chars"] and p["chosen_chars"]["median"]),
             _v(p["rejected_chars"] and p["rejected_chars"]["median"]), _pct(p["chosen_longer_rate"]),
             _v(p["mean_score_gap"])] for it in r["iterations"] if (p := it["pairs"])]
    return (["iter", "pairs", "chosen mean", "rejected mean", "chosen median", "rejected median",
             "chosen longer", "score gap"], rows) if rows else None


def answer_table(r: dict) -> Table | None:
    rows = [[str(it["iteration"]), it["model"], str(a["n"]), _v(a["mean"]), _v(a["q1"]), _v(a["median"]),
             _v(a["q3"]), _v(a["max"])] for it in r["iterations"] if (a := it["answer_chars"])]
    return (["iter", "model", "answers", "mean", "q1", "median", "q3", "max"], rows) if rows else None


def agreement_table(r: dict) -> Table | None:
    rows = [[a["model"], _v(a["mode"]), _v(a["pairs"]), _pct(a["judge"]["pairwise_accuracy"]),
             _pct(a["length"]["pairwise_accuracy"]), _pct(a["random"]["pairwise_accuracy"]),
             _pct(a["judge"]["shorter_preferred_accuracy"]), _v(a["judge"]["length_correlation"]),
             _pct(a["judge"]["parse_failure_rate"])] for a in r["judge_agreement"]]
    return (["judge", "mode", "pairs", "pairwise acc", "length heuristic", "random", "shorter-pref acc",
             "length corr", "parse fail"], rows) if rows else None


def win_table(r: dict) -> Table | None:
    rows = [[f"{w['a']} vs {w['b']}", _v(w["judge"]), _v(w["n"]), _pct_ci(w, "win_rate"), _pct_ci(w, "tie_rate"),
             _pct_ci(w, "loss_rate"), _how(w), _unparsed(w), _bias(w), _check(w), _v(w["mean_len_a"]),
             _v(w["mean_len_b"])] for w in r["win_rates"]]
    return (["comparison", "judge", "n", "win [95%]", "tie [95%]", "loss [95%]", "verdicts", "unread",
             "first slot (A first / B first)", "judge on LLMBar (length)", "len a", "len b"],
            rows) if rows else None


def _how(w: dict) -> str:
    """How the verdicts were read: forced choice with the mean P(a better) and the margin, or generated."""
    if w.get("method") == "forced choice":
        mean = "-" if w.get("mean_p_a") is None else f"{w['mean_p_a']:.2f}"
        return f"forced choice, mean P(a) {mean}, margin {_v(w.get('margin'))}"
    return _v(w.get("method") or "generated verdicts")


def _unparsed(w: dict) -> str:
    """Prompts without a readable verdict (forced choice: too little probability on A and B; generated: an
    unparseable verdict in an order); they count as ties, so many of them explain a wall of ties."""
    if w.get("method") == "forced choice" and w.get("unreadable") is not None:
        return f"{w['unreadable']} of {w['n']}"
    return "-" if w.get("parse_failures") is None else f"{w['parse_failures']} of {2 * w['n']} verdicts"


def _bias(w: dict) -> str:
    b = w.get("position_bias") or {}
    return "-" if not b else f"{_pct(b.get('ab'))} / {_pct(b.get('ba'))}"


def _check(w: dict) -> str:
    c = w.get("judge_check")
    return "-" if not c else f"{_pct(c['judge_accuracy'])} ({_pct(c['length_accuracy'])}), {c['pairs']} pairs"


def ifeval_table(r: dict) -> Table | None:
    rows = [[x["model"], _v(x["n_prompts"]), _pct(x["prompt_strict"]), _pct(x["prompt_loose"]),
             _pct(x["inst_strict"]), _pct(x["inst_loose"]), _v(x["mean_length_chars"])] for x in r["ifeval"]]
    return (["model", "prompts", "prompt strict", "prompt loose", "inst strict", "inst loose", "mean length"],
            rows) if rows else None


def suite_table(r: dict) -> Table | None:
    rows = [[name, x["model"], _v(x["score"])] for name, xs in sorted(r["suites"].items()) for x in xs]
    return (["suite", "model", "score"], rows) if rows else None


SECTIONS = [
    Section("Progress", None, progress_table, _iteration_why("gen-prompts")),
    Section("Judge scores and parse failures", "scores", score_table, _iteration_why("judge"),
            "Candidate scores are the mean of the k judgments (expected mode: the expected digit), rounded half "
            "up; a parse failure is a judgment without a readable score."),
    Section("Judge collapse and Meta-Rewarding", None, meta_table, _iteration_why("judge"),
            "Per iteration t, about M_t, the model that answered, judged (and with meta.enabled meta-judged) in it: "
            "its judge's agreement with human rankings (data.eft_eval; shorter-pref acc = on pairs where humans "
            "prefer the shorter answer), the distribution of its valid judge scores with its entropy (2.585 bits "
            "when all six scores are equally common, 0 when one is all), COLLAPSE when one score is more than "
            "meta.collapse_share of them, the judge pairs the meta-judge built and those DPO trained on beside the "
            "actor pairs (their share of all pairs), IFEval, and the mean answer length in characters."),
    Section("Chosen vs rejected length", "pair_lengths", pair_table, _iteration_why("pairs"),
            "If chosen answers are mostly the longer ones, the judge may be rewarding length."),
    Section("Answer length", "answer_lengths", answer_table, _iteration_why("sample"),
            "Characters per sampled answer of M_t in iteration t."),
    Section("Judge agreement with human rankings", "judge_agreement", agreement_table,
            _eval_why("judge_agreement"),
            "Each model as a judge on data.eft_eval, beside the length heuristic (the longer answer wins) and "
            "random scores on the same responses. Only accuracy above the length heuristic is signal."),
    Section("Win rates", "win_rates", win_table, _eval_why("win_rates"),
            "Pairwise comparison, both answer orders. Forced choice (a judge with next-token probabilities): "
            "P(a better) from P(A) vs P(B), averaged over both orders; a win needs it above 0.5 + margin, a loss "
            "below 0.5 - margin. Generated verdicts: a win only when both orders agree. Unreadable verdicts count "
            "as ties. First slot: the share of verdicts for the first answer, per order (50% on average = no "
            "position bias). Judge on LLMBar: the same judge's accuracy on human-labelled LLMBar Natural pairs, "
            "both orders, beside the length heuristic's (the longer output wins) on the same pairs; random is "
            "50%."),
    Section("IFEval", "ifeval", ifeval_table, _eval_why("ifeval")),
    Section("Benchmark suites", "suites", suite_table, _eval_why("suites")),
]


# markdown --------------------------------------------------------------------------------------------------
def markdown(results: dict, plot_files: dict[str, str]) -> str:
    """plot_files: plot name -> path relative to the report."""
    out = [f"# Self-rewarding run report: {results['run_dir']}", "", _head_line(results), ""]
    for s in SECTIONS:
        out += [f"## {s.title}", ""]
        table = s.table(results)
        if table is None:
            out += [f"Not available ({s.why_missing(results)}).", ""]
            continue
        out += [s.note, ""] if s.note else []
        out += [f"![{s.title}]({plot_files[s.plot]})", ""] if s.plot in plot_files else []
        out += _md_table(table) + [""]
    return "\n".join(out + ["## Config", "", "```yaml", _config_text(results).rstrip(), "```", ""])


def _md_table(table: Table) -> list[str]:
    head, rows = table
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


# html ------------------------------------------------------------------------------------------------------
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1040px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; word-break: break-all; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: .6em 0; }
.missing { color: #8a5a00; background: #fff6e0; padding: .4em .8em; border-left: 3px solid #e0a800; }
.note { color: #555; } pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
"""


def to_html(results: dict, plots: dict[str, bytes]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>selfreward report: {e(results['run_dir'])}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>Self-rewarding run report: {e(results['run_dir'])}</h1>", f"<p>{e(_head_line(results))}</p>"]
    for s in SECTIONS:
        out.append(f"<h2>{e(s.title)}</h2>")
        table = s.table(results)
        if table is None:
            out.append(f'<p class="missing">Not available ({e(s.why_missing(results))}).</p>')
            continue
        out += [f'<p class="note">{e(s.note)}</p>'] if s.note else []
        if s.plot in plots:
            data = base64.b64encode(plots[s.plot]).decode("ascii")
            out.append(f'<img src="data:image/png;base64,{data}" alt="{e(s.title)}">')
        out.append(_html_table(table))
    out += ["<h2>Config</h2>", f"<pre>{e(_config_text(results))}</pre>", "</body></html>"]
    return "\n".join(out) + "\n"


def _html_table(table: Table) -> str:
    e = html.escape
    head, rows = table
    lines = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(lines + ["</table>"])


# shared ----------------------------------------------------------------------------------------------------
def _head_line(results: dict) -> str:
    sft = results["sft"]
    sft_text = (f"SFT: {sft.get('examples')} examples, {sft.get('steps')} steps, loss {sft.get('train_loss')}"
                if sft else f"SFT: not available ({results['missing']['sft']})")
    versions = results["versions"] or {}
    made = ", ".join(f"{k} {v}" for k, v in versions.items())
    return sft_text + (f". Versions: {made}." if made else ".")


def _config_text(results: dict) -> str:
    if results["config"] is None:
        return f"not available ({results['missing']['config']})"
    return yaml.safe_dump(results["config"], sort_keys=False)


def _v(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:g}" if isinstance(x, float) else str(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _pct_ci(w: dict, key: str) -> str:
    if w["ci"][key] is None:
        return _pct(w[key])
    lo, hi = w["ci"][key]
    return f"{_pct(w[key])} [{100 * lo:.1f}, {100 * hi:.1f}]"
