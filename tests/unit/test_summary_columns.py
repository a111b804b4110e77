"""The summary's iteration table reads each column from the stage that means it."""

from __future__ import annotations

from selfreward.rundir import RunDir, Stage, previous
from selfreward.summary import iteration_rows, summary, table


def _done(rd: RunDir, name: str, t: int, stats: dict) -> None:
    stage = Stage(name, t)
    rd.mark_done(stage, {}, previous(stage, False), stats)


def test_cut_off_is_the_sample_stages_count_not_the_judges_unscored(tmp_path):
    # regression: the judge's "cut_off" (cut-off answers left unscored: 0 without sample.require_eos) replaced the
    # sample stage's (53 of 64 answers reached max_new_tokens), and `make run` printed "cut off 0"
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    _done(rd, "sft", 0, {})
    _done(rd, "gen-prompts", 1, {"prompts_kept": 16})
    _done(rd, "sample", 1, {"candidates": 64, "cut_off": 53})
    _done(rd, "judge", 1, {"cut_off": 0, "unscored_candidates": 0})
    assert iteration_rows(rd, 1)[0]["cut_off"] == 53
    header, row = summary(rd, 1)[0].splitlines()[1:3]  # after the SFT line
    assert dict(zip(header.replace("cut off", "cut_off").split(), row.split()))["cut_off"] == "53"


def test_a_parse_failure_rate_is_printed_from_the_exact_ratio():
    # regression: 17 failures of 192 judgments (8.854%) printed as "8.8%": the judge stage stored the rate rounded
    # to 4 places (0.0885) and the table rounded that again
    from selfreward.stages.judge import summarize

    stats = summarize([{"mode": "sample", "scores": [None] * 17 + [4] * 175, "score": 4.0}])
    assert stats["parse_failures"] == 17 and stats["judgments"] == 192
    assert table([stats], [("parse fail", "parse_failure_rate")]).splitlines()[1].strip() == "8.9%"
