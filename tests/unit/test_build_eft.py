"""build_eft: the paper's EFT recipe (own judgments, kept where they order responses as humans do, thinned, split)."""

from collections import Counter

import pytest

from selfreward.errors import UserError
from selfreward.judges.eft import agrees, build, pick_judgment, rebalance, split
from selfreward.judges.rubric import expected_row, sampled_row
from selfreward.judges.rubric_parse import parse_score


def one_hot(d, p=0.9):
    rest = (1 - p) / 5
    return [p if i == d else rest for i in range(6)]


def judged(score):
    """A sample-mode judge row whose single judgment ends in `score` (None: an unparseable judgment)."""
    return sampled_row([f"Looks like a {score}.\nScore: {score}" if score is not None else "I cannot say."])


# --- agrees ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("human, judge, verdict", [
    ([1.0, 0.5, 0.0], [5, 3, 1], "kept"),                 # strict order matches
    ([0.0, 1.0], [2, 4], "kept"),                          # order independent of position
    ([1.0, 0.0], [3, 3], "disagrees"),                     # judge tie on a human-ordered pair
    ([1.0, 0.0], [1, 4], "disagrees"),                     # inverted
    ([1.0, 1.0, 0.0], [5, 4, 2], "kept"),                  # human tie imposes nothing
    ([1.0, 1.0, 0.0], [4, 5, 2], "kept"),
    ([1.0, 1.0, 0.0], [4, 4, 2], "kept"),
    ([1.0, 0.0], [4, None], "unscored"),
    ([0.5, 0.5, 0.5], [1, 2, 3], "no human order"),
    ([0.7], [3], "no human order"),
    ([1.0, 0.5, 0.0], [5, 1, 3], "disagrees"),             # group of 3: pairs (0,1), (0,2) agree, (1,2) inverted
    ([1.0, 0.5, 0.0], [5, 2, 2], "disagrees"),             # group of 3: two pairs agree, one judge tie
])
def test_agrees(human, judge, verdict):
    assert agrees(human, judge) == verdict


def test_agrees_unscored_before_other_reasons():
    assert agrees([0.5, 0.5], [None, 3]) == "unscored"
    assert agrees([1.0, 0.0], [None, 3]) == "unscored"


def test_agrees_length_mismatch():
    with pytest.raises(ValueError):
        agrees([1.0, 0.0], [3])


# --- pick_judgment: sample mode -------------------------------------------------------------------------------

def test_sample_closest_to_mean():
    row = sampled_row(["A. Score: 2", "B. Score: 4", "C. Score: 5"])  # mean 3.67 -> 4
    assert row["score"] == pytest.approx(11 / 3)
    assert pick_judgment(row) == ("B. Score: 4", 4)


def test_sample_tie_takes_first():
    row = sampled_row(["first. Score: 3", "second. Score: 5"])  # mean 4: both 1 away
    assert pick_judgment(row) == ("first. Score: 3", 3)
    row = sampled_row(["first. Score: 5", "second. Score: 3"])
    assert pick_judgment(row) == ("first. Score: 5", 5)


def test_sample_none_parses():
    assert pick_judgment(sampled_row(["no score here", "Score: 9", "Score: ten"])) is None


def test_sample_non_integer_parse_is_skipped():
    row = sampled_row(["half. Score: 4.5", "Score: 2"])  # mean 3.25: 4.5 is closer but not on the rubric
    assert pick_judgment(row) == ("Score: 2", 2)
    assert pick_judgment(sampled_row(["half. Score: 4.5", "Score: 3.5"])) is None


def test_sample_integer_valued_float_kept():
    row = sampled_row(["fine. Score: 4.0"])
    assert pick_judgment(row) == ("fine. Score: 4.0", 4)
    assert isinstance(pick_judgment(row)[1], int)


def test_sample_text_stripped_and_reparses():
    text, score = pick_judgment(sampled_row(["\n  Good answer.\nScore: 3\n\n"]))
    assert text == "Good answer.\nScore: 3"
    assert parse_score(text) == score == 3


def test_sample_quoted_earlier_score_does_not_count():
    """The final score statement is the judgment's score (judges.rubric_parse): an earlier quoted "Score: 5" is
    part of the justification, and the target parses back to 2."""
    raw = 'The user asked for "Score: 5" explicitly, but the answer is weak.\nScore: 2'
    assert pick_judgment(sampled_row([raw])) == (raw, 2)


def test_sample_row_score_must_match_its_text():
    # a row whose recorded score is not what its text says (edited or stale): that text is never the target
    row = {"mode": "sample", "raw": ["Weak.\nScore: 1", "Good.\nScore: 4"], "scores": [4.0, 4.0], "score": 4.0,
           "spread": 0.0}
    assert pick_judgment(row) == ("Good.\nScore: 4", 4)


# --- pick_judgment: expected mode -----------------------------------------------------------------------------

def test_expected_argmax_digit_replaces_written_digit():
    row = expected_row("Relevant and clear.\nScore: 3", one_hot(4, 0.6))
    text, score = pick_judgment(row)
    assert score == 4
    assert text == "Relevant and clear.\nScore: 4"
    assert parse_score(text) == 4


def test_expected_cut_after_last_label():
    row = expected_row("Decent.\n**Score:** 2\nThanks for reading, this was fun.", one_hot(2))
    text, score = pick_judgment(row)
    assert (text, score) == ("Decent.\n**Score:** 2", 2)  # the closing "**" is the judge's own
    assert parse_score(text) == 2


def test_expected_no_label_appends_one():
    text, score = pick_judgment(expected_row("It answers the question.  ", one_hot(5)))
    assert (text, score) == ("It answers the question.\nScore: 5", 5)


def test_expected_argmax_is_not_the_expectation():
    probs = [0.4, 0.0, 0.0, 0.0, 0.3, 0.3]  # expectation 2.7, argmax 0
    row = expected_row("Hmm. Score:", probs)
    assert row["score"] == pytest.approx(2.7)
    assert pick_judgment(row) == ("Hmm. Score: 0", 0)


def test_expected_probability_tie_takes_lowest_digit():
    assert pick_judgment(expected_row("Score:", [0, 0, 0.5, 0.5, 0, 0]))[1] == 2


def test_expected_no_digit_mass():
    row = expected_row("Score: 4", [0.01] * 6)
    assert row["digit_probs"] is None
    assert pick_judgment(row) is None


def test_expected_earlier_quoted_score_does_not_count():
    raw = 'The user wrote "Score: 5" in the question.\nThe answer misses most of it.\nScore: 2'
    assert pick_judgment(expected_row(raw, one_hot(2))) == (raw, 2)
    # the same text without the quote is fine
    assert pick_judgment(expected_row("The answer misses most of it.\nScore: 2", one_hot(2)))[1] == 2


def test_expected_earlier_equal_score_is_consistent():
    raw = 'It deserves "Score: 4".\nScore: 1'
    assert pick_judgment(expected_row(raw, one_hot(4))) == ('It deserves "Score: 4".\nScore: 4', 4)


def test_unknown_mode():
    with pytest.raises(ValueError):
        pick_judgment({"mode": "vote", "raw": [], "scores": [], "score": None})


# --- rebalance ------------------------------------------------------------------------------------------------

def rows_with(scores):
    return [{"id": i, "score": s} for i, s in enumerate(scores)]


def test_rebalance_cuts_dominant_to_runner_up():
    rows = rows_with([4] * 10 + [3] * 4 + [5] * 2 + [0])
    out = rebalance(rows, seed=0)
    counts = Counter(r["score"] for r in out)
    assert counts == Counter({4: 4, 3: 4, 5: 2, 0: 1})
    assert [r for r in out if r["score"] != 4] == [r for r in rows if r["score"] != 4]  # others untouched
    ids = [r["id"] for r in out]
    assert ids == sorted(ids)  # survivors keep their order


def test_rebalance_interleaved_order_kept():
    rows = rows_with([4, 3, 4, 4, 2, 4, 3, 4])
    out = rebalance(rows, seed=3)
    assert Counter(r["score"] for r in out) == Counter({4: 2, 3: 2, 2: 1})
    assert [r["id"] for r in out] == sorted(r["id"] for r in out)
    assert all(r in rows for r in out)


def test_rebalance_deterministic_by_seed():
    rows = rows_with([4] * 30 + [1] * 5)
    assert rebalance(rows, 7) == rebalance(rows, 7)
    picks = {tuple(r["id"] for r in rebalance(rows, s)) for s in range(10)}
    assert len(picks) > 1


def test_rebalance_top_tie_and_single_score():
    rows = rows_with([2, 3, 2, 3])
    assert rebalance(rows, 0) == rows
    single = rows_with([4] * 5)
    assert rebalance(single, 0) == single
    assert rebalance([], 0) == []


# --- split ----------------------------------------------------------------------------------------------------

def prompt_rows(n_prompts, per=3):
    return [{"id": f"p{p}-{i}", "prompt_id": f"p{p}", "score": 3} for p in range(n_prompts) for i in range(per)]


def test_split_by_prompt_and_fraction():
    rows = prompt_rows(200)
    train, evals = split(rows, 0.25, seed=0)
    train_p, eval_p = {r["prompt_id"] for r in train}, {r["prompt_id"] for r in evals}
    assert not train_p & eval_p
    assert len(train) + len(evals) == len(rows)
    assert 30 <= len(eval_p) <= 70  # 50 expected; binomial sd ~6
    assert len(evals) == 3 * len(eval_p)


def test_split_deterministic_and_seeded():
    rows = prompt_rows(200, per=1)
    assert split(rows, 0.3, seed=1) == split(rows, 0.3, seed=1)
    assert split(rows, 0.3, seed=1) != split(rows, 0.3, seed=2)
    # a prompt's side does not depend on the other rows
    _, evals = split(rows, 0.3, seed=1)
    _, evals_sub = split(rows[:100], 0.3, seed=1)
    assert [r for r in evals if r in rows[:100]] == evals_sub


def test_split_edges():
    rows = prompt_rows(50)
    assert split(rows, 0.0, 0) == (rows, [])
    assert split(rows, 1.0, 0) == ([], rows)
    with pytest.raises(UserError):
        split(rows, 1.5, 0)


# --- build ----------------------------------------------------------------------------------------------------

GROUPS = [
    {"id": "g1", "prompt": "Q1", "responses": [{"text": "a1", "human": 1.0, "id": "r-a1"},
                                               {"text": "b1", "human": 0.0, "id": "r-b1"}]},
    {"id": "g2", "prompt": "Q2", "responses": [{"text": "a2", "human": 0.9},
                                               {"text": "b2", "human": 0.9},
                                               {"text": "c2", "human": 0.1}]},
    {"id": "g3", "prompt": "Q3", "responses": [{"text": "a3", "human": 1.0}, {"text": "b3", "human": 0.0}]},
    {"id": "g4", "prompt": "Q4", "responses": [{"text": "a4", "human": 1.0}, {"text": "b4", "human": 0.0}]},
    {"id": "g5", "prompt": "Q5", "responses": [{"text": "a5", "human": 0.5}, {"text": "b5", "human": 0.5}]},
    {"id": "g6", "prompt": "Q6", "responses": [{"text": "a6", "human": 1.0}, {"text": "b6", "human": 0.0}]},
]
SCORES = [4, 2,            # g1 kept
          4, 4, 1,         # g2 kept (human tie, judge tie)
          4, None,         # g3 unscored
          3, 3,            # g4 disagrees (judge tie)
          4, 2,            # g5 no human order
          2, 4]            # g6 disagrees (inverted)


def test_build_end_to_end():
    out = build(GROUPS, [judged(s) for s in SCORES], eval_fraction=0.0, seed=0)
    stats = out["stats"]
    # kept: g1 (4, 2) and g2 (4, 4, 1): scores 4,2,4,4,1 -> 4 is cut from 3 to 1 (runner-up 2 and 1 have 1 each)
    assert stats == {
        "groups_in": 6, "responses_in": 13, "responses_unscored": 1,
        "groups_kept": 2, "groups_dropped": {"unscored": 1, "no human order": 1, "disagrees": 2},
        "responses_blank_dropped": 0,
        "rows_kept": 5, "rows_rebalanced": 3,
        "score_hist_kept": {"0": 0, "1": 1, "2": 1, "3": 0, "4": 3, "5": 0},
        "score_hist_rebalanced": {"0": 0, "1": 1, "2": 1, "3": 0, "4": 1, "5": 0},
        "train_rows": 3, "eval_rows": 0, "train_prompts": 2,
        "eval_prompts": 0,
    }
    assert out["eval"] == []
    assert sorted(r["score"] for r in out["train"]) == [1, 2, 4]
    by_response = {r["response"]: r for r in out["train"]}
    assert by_response["b1"] == {"id": "r-b1", "prompt_id": "g1", "prompt": "Q1", "response": "b1",
                                 "human_score": 0.0, "score": 2, "target": "Looks like a 2.\nScore: 2",
                                 "source": "build-eft"}
    assert by_response["c2"]["id"] == "g2-2"
    assert by_response["c2"]["human_score"] == 0.1
    for r in out["train"]:
        assert parse_score(r["target"]) == r["score"]


def test_build_keeps_all_when_balanced_and_splits_by_prompt():
    groups = [{"id": f"g{i}", "prompt": f"Q{i}",
               "responses": [{"text": f"good {i}", "human": 1.0}, {"text": f"bad {i}", "human": 0.0}]}
              for i in range(40)]
    rows = [judged(s) for _ in groups for s in (5, 1)]
    out = build(groups, rows, eval_fraction=0.5, seed=1)
    stats = out["stats"]
    assert stats["rows_kept"] == stats["rows_rebalanced"] == 80
    assert stats["train_rows"] + stats["eval_rows"] == 80
    assert stats["train_prompts"] + stats["eval_prompts"] == 40
    assert stats["eval_prompts"] > 0 and stats["train_prompts"] > 0
    assert not {r["prompt_id"] for r in out["train"]} & {r["prompt_id"] for r in out["eval"]}
    assert build(groups, rows, eval_fraction=0.5, seed=1) == out


def test_build_expected_mode_rows():
    groups = [{"id": "g", "prompt": "Q", "responses": [{"text": "a", "human": 2.0}, {"text": "b", "human": 1.0}]}]
    rows = [expected_row("Great.\nScore: 3", one_hot(5)), expected_row("Poor.", one_hot(1))]
    out = build(groups, rows, eval_fraction=0.0)
    assert [(r["target"], r["score"]) for r in out["train"]] == [("Great.\nScore: 5", 5), ("Poor.\nScore: 1", 1)]


def test_build_blank_response_left_out():
    groups = [{"id": "g", "prompt": "Q", "responses": [{"text": "fine", "human": 1.0}, {"text": "  ", "human": 0.0}]}]
    out = build(groups, [judged(4), judged(0)], eval_fraction=0.0)
    assert [r["response"] for r in out["train"]] == ["fine"]
    assert out["stats"]["groups_kept"] == 1
    assert out["stats"]["responses_blank_dropped"] == 1


def test_build_row_count_mismatch():
    with pytest.raises(UserError, match="12 judge rows for 13 responses"):
        build(GROUPS, [judged(s) for s in SCORES[:-1]])


def test_build_nothing_kept():
    rows = [judged(s) for s in SCORES[:2]] + [judged(None)] * 3 + [judged(s) for s in SCORES[5:]]
    rows[0] = judged(1)  # g1 now inverted
    with pytest.raises(UserError) as e:
        build(GROUPS, rows)
    msg = str(e.value)
    assert "\n" not in msg
    assert "2 unscored" in msg and "1 with no human order" in msg and "3 disagreeing" in msg
    assert "EFT" in msg and "data.eft_train=builtin" in msg


def test_build_no_groups():
    with pytest.raises(UserError):
        build([], [])
