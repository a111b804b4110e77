"""report: results.json, report.html and report.md from a run directory.

The fixture tests/fixtures/run_small is a real tiny-cpu run of the default model trimmed to 2 prompts per
iteration (see its FIXTURE.md); the expected numbers below are worked out by hand from its files.
"""

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from selfreward.cli import main
from selfreward.errors import UserError
from selfreward.report import write_report
from selfreward.report.collect import collect, length_stats
from selfreward.report.render import markdown, to_html

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run_small"
IMG = '<img src="data:image/png;base64,'


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One full build through the CLI (the plots take about a second); the tests below read its outputs."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(FIXTURE, run)
    assert main(["report", str(run)]) == 0
    return run


@pytest.fixture
def run(tmp_path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "run")
    return tmp_path / "run"


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


# numbers ------------------------------------------------------------------------------------------------------
def test_answer_lengths(built):
    it1, it2 = results_of(built)["iterations"]
    # iteration 1 answers, sorted: 292 297 382 428 452 501 509 659; sum 3520
    # q1 at position 1.75: 297 + .75 * 85 = 360.75; q3 at 5.25: 501 + .25 * 8 = 503
    assert it1["answer_chars"] == {"n": 8, "mean": 440.0, "min": 292, "q1": 360.8, "median": 440.0, "q3": 503.0,
                                   "max": 659}
    # iteration 2: 79 80 113 197 457 473 547 607; sum 2553; median (197 + 457) / 2
    assert it2["answer_chars"] == {"n": 8, "mean": 319.1, "min": 79, "q1": 104.8, "median": 327.0, "q3": 491.5,
                                   "max": 607}


def test_judge_scores(built):
    it1, it2 = results_of(built)["iterations"]
    # iteration 1: 11 of 24 judgments parsed; candidate means 2, 3.5, 3, 2.5, 4, 3 (two unscored)
    assert it1["judge"] == {"judge_mode": "sample", "judgments": 24, "parse_failures": 13,
                            "parse_failure_rate": 0.5417, "unscored_candidates": 2, "mean_score": 3.0,
                            "score_histogram": {"0": 0, "1": 0, "2": 1, "3": 3, "4": 2, "5": 0}}
    # iteration 2: 5 of 24 parsed; means 2, 2, 4, 2.5 -> 2.625; 2.5 rounds half up to 3
    assert it2["judge"]["parse_failure_rate"] == 0.7917
    assert it2["judge"]["mean_score"] == 2.625
    assert it2["judge"]["score_histogram"] == {"0": 0, "1": 0, "2": 2, "3": 1, "4": 1, "5": 0}


def test_chosen_vs_rejected(built):
    it1, it2 = results_of(built)["iterations"]
    p1 = it1["pairs"]  # chosen 501 vs 292 (3.5 vs 2.0), chosen 452 vs 659 (4.0 vs 2.5)
    assert (p1["n"], p1["chosen_chars"]["mean"], p1["rejected_chars"]["mean"]) == (2, 476.5, 475.5)
    assert (p1["chosen_longer_rate"], p1["mean_score_gap"]) == (0.5, 1.5)
    p2 = it2["pairs"]  # one pair, 607 (4.0) vs 473 (2.5); the other prompt tied 2.0 / 2.0
    assert (p2["n"], p2["chosen_chars"]["max"], p2["rejected_chars"]["min"]) == (1, 607, 473)
    assert (p2["chosen_longer_rate"], p2["mean_score_gap"]) == (1.0, 1.5)
    assert it2["stages_done"] == ["gen-prompts", "sample", "judge", "pairs", "dpo"]
    assert it2["dpo"]["pairs_used"] == 1


def test_evaluations(built):
    r = results_of(built)
    m0, m1 = r["judge_agreement"]
    # judge-M0/M1.json are real evaluations, copied: their values rounded to 4 places
    assert (m0["model"], m0["pairs"], m0["judge"]["pairwise_accuracy"]) == ("M0", 68, 0.5588)
    assert m0["length"]["pairwise_accuracy"] == 0.75 and m1["length"]["pairwise_accuracy"] == 0.75
    assert (m1["judge"]["pairwise_accuracy"], m1["judge"]["length_correlation"]) == (0.5147, 0.7976)
    assert [(x["model"], x["prompt_strict"], x["inst_loose"]) for x in r["ifeval"]] == [
        ("M1", 0.2, 0.3667), ("M2", 0.25, 0.4)]  # 4/20, 11/30; 5/20, 12/30
    assert [(w["a"], w["b"], w["n"], w["win_rate"]) for w in r["win_rates"]] == [("M2", "M1", 20, 0.35),
                                                                                  ("M3", "M1", 20, 0.45)]
    assert r["win_rates"][0]["ci"]["win_rate"] == [0.15, 0.55]
    assert [w["parse_failures"] for w in r["win_rates"]] == [3, None]  # the M3 file predates the field
    assert r["suites"] == {"mtbench": [{"model": "M1", "iteration": 1, "score": 2.45},
                                       {"model": "M2", "iteration": 2, "score": 2.6}]}
    assert r["missing"] == {}
    assert r["config"]["sample"]["n"] == 4 and r["sft"]["steps"] == 4


def test_length_stats_of_one_and_none():
    assert length_stats([5]) == {"n": 1, "mean": 5.0, "min": 5, "q1": 5.0, "median": 5.0, "q3": 5.0, "max": 5}
    assert length_stats([]) is None


# the files ------------------------------------------------------------------------------------------------
def test_html_is_self_contained(built):
    page = (built / "report.html").read_text()
    assert page.count(IMG) == 7
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page
    assert re.findall(r'src="([^"]{5})', page) == ["data:"] * 7
    images = [base64.b64decode(x) for x in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert images[0] == (built / "report" / "scores.png").read_bytes()
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in images)


def test_html_shows_the_length_baseline_beside_the_judge(built):
    page = (built / "report.html").read_text()
    assert "<th>pairwise acc</th><th>length heuristic</th><th>random</th>" in page
    assert "<td>55.9%</td><td>75.0%</td><td>49.4%</td>" in page


def test_markdown_and_plot_files(built):
    md = (built / "report.md").read_text()
    pngs = sorted(p.name for p in (built / "report").glob("*.png"))
    assert pngs == sorted(["scores.png", "pair_lengths.png", "answer_lengths.png", "judge_agreement.png",
                           "win_rates.png", "ifeval.png", "suites.png"])
    assert all(f"](report/{name})" in md for name in pngs)
    assert "| 1 | sample | 24 | 54.2% | 2 | 3 | 0/0/1/3/2/0 |" in md
    # a file from before forced choice: generated verdicts, no position bias or judge check recorded
    assert ("| M2 vs M1 | M1 | 20 | 35.0% [15.0, 55.0] | 30.0% [10.0, 50.0] | 35.0% [15.0, 55.0] | generated verdicts "
            "| 3 of 40 verdicts | - | - |") in md
    assert all((built / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)


# a run in progress, evaluations off -------------------------------------------------------------------------
def test_missing_artifacts_degrade(run):
    shutil.rmtree(run / "eval")
    for name in ("pairs", "dpo"):
        (run / "iter2" / f"{name}.done.json").unlink()
    r = collect(run)
    assert r["iterations"][1]["stages_done"] == ["gen-prompts", "sample", "judge"]
    assert r["iterations"][1]["pairs"] is None and r["iterations"][0]["pairs"]["n"] == 2
    assert set(r["missing"]) == {"judge_agreement", "ifeval", "suites", "win_rates"}
    page = to_html(r, {})
    assert page.count('class="missing"') == 4
    assert "Not available (no eval/judge-M&lt;t&gt;.json yet: no eval-judge stage has finished)" in page
    assert "Not available (no eval/compare-M" in markdown(r, {})


def test_only_a_config_yet(run):
    for p in list(run.iterdir()):
        if p.name != "config.yaml":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out = write_report(run)
    r = results_of(run)
    assert [it["stages_done"] for it in r["iterations"]] == [[], []]
    assert set(r["missing"]) == {"sft", "iterations", "judge_agreement", "ifeval", "suites", "win_rates"}
    page = out.read_text()
    assert IMG not in page
    assert "Not available (no self-rewarding iteration has finished a stage yet)" in page


def test_judge_eval_switched_off(run):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["judge_eval"]["max_prompts"] = 0
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    for p in (run / "eval").glob("judge-M*"):
        p.unlink()
    assert collect(run)["missing"] == {"judge_agreement": "switched off (judge_eval.max_prompts = 0)"}


def test_comparison_without_prompts(run):
    """compare.tally of no outcomes has null rates and intervals: shown as '-', not an error."""
    path = run / "eval" / "compare-M2-vs-M1.json"
    d = json.loads(path.read_text())
    d.update(n=0, wins=0, ties=0, losses=0, win_rate=None, tie_rate=None, loss_rate=None, ci=None)
    path.write_text(json.dumps(d))
    w = collect(run)["win_rates"][0]
    assert (w["win_rate"], w["ci"]["win_rate"]) == (None, None)
    assert "<td>M2 vs M1</td><td>M1</td><td>0</td><td>-</td>" in to_html(collect(run), {})


# bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", ["eval/judge-M1.json", "eval/compare-M2-vs-M1.json", "iter1/judge.done.json",
                                 "eval/suite-mtbench-M2.json"])
def test_malformed_json_names_the_file(run, rel):
    (run / rel).write_text('{"judge": ')
    with pytest.raises(UserError, match=re.escape(rel.split("/")[1]) + ": not valid JSON"):
        collect(run)


def test_missing_field_names_file_and_field(run):
    path = run / "eval" / "ifeval-M2.json"
    d = json.loads(path.read_text())
    del d["inst_loose"]
    path.write_text(json.dumps(d))
    with pytest.raises(UserError, match=r"ifeval-M2\.json: missing field 'inst_loose'"):
        collect(run)


def test_bad_jsonl_row_names_the_line(run):
    with (run / "iter1" / "pairs.jsonl").open("a") as f:
        f.write("not json\n")
    with pytest.raises(UserError, match=r"pairs\.jsonl:3: not valid JSON"):
        collect(run)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        collect(tmp_path / "nope")


def test_cli_errors_in_one_line(run, capsys):
    (run / "eval" / "judge-M0.json").write_text("[1, 2")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfreward: error: ") and "judge-M0.json: not valid JSON" in err
    assert "\n" not in err
