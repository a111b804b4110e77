"""A run's report: RUN_DIR/results.json (the numbers), report.html (self-contained: inline plots and CSS, opens
offline), report.md with its plots in RUN_DIR/report/. `selfreward report RUN_DIR` regenerates all of them.

results.json keys (schema 1; a key is always present, an empty section has its reason in "missing"):
  schema            1
  run_dir           the run directory as given
  config            config.yaml as a mapping (a directory without one is not a run: refused)
  versions          package versions from manifest.json, or null
  sft               the sft stage's stats (examples, dropped_too_long, steps, train_loss, ...), or null
  iterations        one per t = 1..T: iteration, model ("M<t>", the model that drives it), stages_done,
                    prompts_kept, prompts_generated,
                    judge {judge_mode, judgments, parse_failures, parse_failure_rate, unscored_candidates,
                           mean_score, score_histogram {"0".."5": candidates}} | null,
                    score_distribution {valid_scores, score_shares {"0".."5": share of the valid judge scores},
                           score_entropy (bits), top_score, top_score_share, collapse (the warning, or null)}
                      | null (null also for a run from before the collapse guard),
                    answer_chars LENGTHS (every sampled answer) | null,
                    pairs {n, chosen_chars LENGTHS, rejected_chars LENGTHS, chosen_longer_rate,
                           mean_score_gap (chosen minus rejected score)} | null,
                    dpo {pairs_used, steps, train_loss, actor_pairs, judge_pairs, judge_pair_share} | null,
                    meta {meta_answers, meta_comparisons, meta_unread, judge_pairs_built, judge_pair_share_max}
                      | null (the meta-judge stage of Meta-Rewarding), wall_seconds
  judge_agreement   per eval/judge-M<t>.json: model, iteration, mode, pairs, and judge, length, random, each
                    {pairs, pairwise_accuracy, shorter_preferred_accuracy, length_correlation, exact_match,
                    top1, spearman, kendall, parse_failure_rate}
  ifeval            per eval/ifeval-M<t>.json: model, iteration, prompt_strict, prompt_loose, inst_strict,
                    inst_loose, n_prompts, mean_length_chars
  suites            {suite name: [{model, iteration, score}]} from eval/suite-<name>-M<t>.json
  win_rates         per eval/compare-M<a>-vs-M<b>.json: a, b, judge, prompts, n, wins, ties, losses, win_rate,
                    tie_rate, loss_rate, ci {win_rate, tie_rate, loss_rate: [lo, hi]}, mean_len_a, mean_len_b,
                    parse_failures, method ("forced choice" | "generated verdicts"), margin, mean_p_a (mean
                    P(a better), forced choice), unreadable, position_bias {ab, ba: first-slot share per order},
                    judge_check {pairs, method, data, judge_accuracy, length_accuracy, random_accuracy,
                    mean_p_correct, unreadable} (the judge on LLMBar Natural) | null; null where a file lacks them
  missing           {section key: why it is empty}, for config, sft, iterations (none has finished a stage),
                    judge_agreement, ifeval, suites, win_rates
LENGTHS = {n, mean, min, q1, median, q3, max} in characters. Rates are fractions in 0..1.
"""

from __future__ import annotations

from pathlib import Path

from selfreward.errors import UserError
from selfreward.records import write_json, write_text
from selfreward.report.collect import collect
from selfreward.rundir import RunDir

PLOT_DIR = "report"


def write_report(run_dir: Path) -> Path:
    """Write results.json, report.html and report.md (plots in RUN_DIR/report/); returns report.html's path.

    Everything is read, checked and drawn first: a damaged run directory, or one that is not a run, gets a
    one-line UserError and no file; a read-only one, a one-line UserError saying the report must be written."""
    from selfreward.report.plots import all_plots  # matplotlib only when a report is drawn
    from selfreward.report.render import markdown, to_html

    root = Path(run_dir)
    results = collect(root)
    plots = all_plots(results)
    md = markdown(results, {n: f"{PLOT_DIR}/{n}.png" for n in plots})
    page = to_html(results, plots)
    RunDir(root).require_writable("report writes report.html, report.md, results.json and report/ into it")
    write_json(root / "results.json", results)
    try:
        (root / PLOT_DIR).mkdir(exist_ok=True)
        for old in (root / PLOT_DIR).glob("*.png"):  # a plot that has nothing to draw now must not linger
            if old.stem not in plots:
                old.unlink()
    except OSError as e:
        raise UserError(f"could not write {root / PLOT_DIR}: {e.strerror or e}") from None
    for name, png in plots.items():
        write_text(root / PLOT_DIR / f"{name}.png", png)
    write_text(root / "report.md", md)
    out = root / "report.html"
    write_text(out, page)
    return out
