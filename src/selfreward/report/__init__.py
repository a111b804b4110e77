"""A run's report: RUN_DIR/results.json (the numbers), report.html (self-contained: inline plots and CSS, opens
offline), report.md with its plots in RUN_DIR/report/. `selfreward report RUN_DIR` regenerates all of them.

results.json keys (schema 1; a key is always present, an empty section has its reason in "missing"):
  schema            1
  run_dir           the run directory as given
  config            config.yaml as a mapping, or null
  versions          package versions from manifest.json, or null
  sft               the sft stage's stats (examples, dropped_too_long, steps, train_loss, ...), or null
  iterations        one per t = 1..T: iteration, model ("M<t>", the model that drives it), stages_done,
                    prompts_kept, prompts_generated,
                    judge {judge_mode, judgments, parse_failures, parse_failure_rate, unscored_candidates,
                           mean_score, score_histogram {"0".."5": candidates}} | null,
                    answer_chars LENGTHS (every sampled answer) | null,
                    pairs {n, chosen_chars LENGTHS, rejected_chars LENGTHS, chosen_longer_rate,
                           mean_score_gap (chosen minus rejected score)} | null,
                    dpo {pairs_used, steps, train_loss} | null, wall_seconds
  judge_agreement   per eval/judge-M<t>.json: model, iteration, mode, pairs, and judge, length, random, each
                    {pairs, pairwise_accuracy, shorter_preferred_accuracy, length_correlation, exact_match,
                    top1, spearman, kendall, parse_failure_rate}
  ifeval            per eval/ifeval-M<t>.json: model, iteration, prompt_strict, prompt_loose, inst_strict,
                    inst_loose, n_prompts, mean_length_chars
  suites            {suite name: [{model, iteration, score}]} from eval/suite-<name>-M<t>.json
  win_rates         per eval/compare-M<a>-vs-M<b>.json: a, b, judge, prompts, n, wins, ties, losses, win_rate,
                    tie_rate, loss_rate, ci {win_rate, tie_rate, loss_rate: [lo, hi]}, mean_len_a, mean_len_b
  missing           {section key: why it is empty}, for config, sft, iterations (none has finished a stage),
                    judge_agreement, ifeval, suites, win_rates
LENGTHS = {n, mean, min, q1, median, q3, max} in characters. Rates are fractions in 0..1.
"""

from __future__ import annotations

from pathlib import Path

from selfreward.records import write_json
from selfreward.report.collect import collect

PLOT_DIR = "report"


def write_report(run_dir: Path) -> Path:
    """Write results.json, report.html and report.md (plots in RUN_DIR/report/); returns report.html's path."""
    from selfreward.report.plots import all_plots  # matplotlib only when a report is drawn
    from selfreward.report.render import markdown, to_html

    root = Path(run_dir)
    results = collect(root)
    write_json(root / "results.json", results)
    plots = all_plots(results)
    (root / PLOT_DIR).mkdir(exist_ok=True)
    for old in (root / PLOT_DIR).glob("*.png"):  # a plot that has nothing to draw now must not linger
        old.unlink()
    for name, png in plots.items():
        (root / PLOT_DIR / f"{name}.png").write_bytes(png)
    (root / "report.md").write_text(markdown(results, {n: f"{PLOT_DIR}/{n}.png" for n in plots}), encoding="utf-8")
    out = root / "report.html"
    out.write_text(to_html(results, plots), encoding="utf-8")
    return out
