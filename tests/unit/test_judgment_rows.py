"""judgment_rows.check_judgments: judgments.jsonl against the candidates, before pairs are built on it."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfreward.errors import UserError
from selfreward.judgment_rows import check_judgments

J, C = "iter1/judgments.jsonl", "iter1/candidates.jsonl"


def candidates(n_prompts=2, n=2):
    return [{"id": p * n + j, "prompt_id": p, "prompt": f"p{p}", "response": f"r{p}.{j}"}
            for p in range(n_prompts) for j in range(n)]


def judgments(cands, scores=None):
    scores = scores or [1.0 + i % 4 for i in range(len(cands))]
    return [{"candidate_id": c["id"], "prompt_id": c["prompt_id"], "score": s} for c, s in zip(cands, scores)]


def error(cands, judged) -> str:
    with pytest.raises(UserError) as e:
        check_judgments(cands, judged, J, candidates_where=C)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_good_rows_pass():
    cands = candidates()
    check_judgments(cands, judgments(cands), J, candidates_where=C)
    rows = judgments(cands)
    rows[0]["score"] = None  # could not be scored: allowed
    rows[1]["score"] = 5  # ints too, and the rubric's ends
    rows[2]["score"] = 0
    check_judgments(cands, rows, J)


def test_missing_score_names_row_and_field():
    """Regression: a row without score was a KeyError in pairs, after its old done-marker had been deleted."""
    cands = candidates()
    rows = judgments(cands)
    del rows[2]["score"]
    assert error(cands, rows) == f"{J} row 3: missing field 'score' (null for a candidate that could not be scored)"


@pytest.mark.parametrize("score, expected", [
    ("3.5", "field 'score' must be a number or null, got str '3.5'"),  # regression: written into pairs.jsonl
    (True, "field 'score' must be a number or null, got bool True"),
    ([3], "field 'score' must be a number or null, got list [3]"),
    (math.nan, "field 'score' must be a finite number or null, got nan"),  # regression: paired a candidate with itself
    (math.inf, "field 'score' must be a finite number or null, got inf"),
    (5.5, "field 'score' is 5.5, outside the rubric's 0-5"),
    (-1, "field 'score' is -1, outside the rubric's 0-5"),
])
def test_bad_scores(score, expected):
    cands = candidates()
    rows = judgments(cands)
    rows[1]["score"] = score
    assert error(cands, rows).startswith(f"{J} row 2: {expected}")


@pytest.mark.parametrize("source, score", [("pairwise", 0.73), ("implicit", -12.5), ("implicit", 1e6),
                                           ("ensemble", 7)])
def test_other_sources_take_any_finite_number(source, score):
    cands = candidates()
    rows = judgments(cands)
    for r in rows:
        r["source"] = source
    rows[0]["score"] = score
    check_judgments(cands, rows, J)
    rows[0]["score"] = math.nan
    assert "must be a finite number" in error(cands, rows)


def test_rubric_source_named_explicitly_keeps_the_range():
    cands = candidates()
    rows = judgments(cands)
    rows[0].update(source="rubric", score=6)
    assert "outside the rubric's 0-5" in error(cands, rows)
    rows[0].update(source=3, score=1)
    assert error(cands, rows) == f"{J} row 1: field 'source' must be str (rubric, pairwise, implicit, ...), got int"


def test_ensemble_rows_check_each_source():
    cands = candidates()
    rows = judgments(cands)
    for r in rows:
        r.update(source="ensemble", sources={"rubric": {"score": 3}, "implicit": {"score": -2.5}})
    check_judgments(cands, rows, J)
    rows[2]["sources"]["rubric"]["score"] = 9
    assert error(cands, rows).startswith(f"{J} row 3 (sources.rubric): field 'score' is 9, outside the rubric's 0-5")
    rows[2]["sources"] = {"implicit": 0.5}
    assert error(cands, rows) == f"{J} row 3: field 'sources.implicit' must be an object with a 'score'"
    rows[2]["sources"] = [1]
    assert error(cands, rows).startswith(f"{J} row 3: field 'sources' must be an object")


def test_duplicate_judgment_row():
    """Regression: a second row for a candidate silently won."""
    cands = candidates()
    rows = judgments(cands) + [{"candidate_id": 1, "prompt_id": 0, "score": 5}]
    assert error(cands, rows) == f"{J} row 5: field 'candidate_id': candidate 1 is judged twice (first in row 2)"


def test_duplicate_candidate_id():
    cands = candidates()
    cands[3]["id"] = 1
    assert error(cands, judgments(cands)).startswith(f"{C} row 4: field 'id': candidate 1 appears twice")


def test_unknown_candidate_and_prompt_mismatch():
    cands = candidates()
    rows = judgments(cands)
    rows[0]["candidate_id"] = 99
    assert error(cands, rows) == f"{J} row 1: field 'candidate_id': 99 is not a candidate of {C}"
    rows = judgments(cands)
    rows[3]["prompt_id"] = 0
    assert error(cands, rows) == (f"{J} row 4: field 'prompt_id' is 0, but candidate 3 answers prompt 1 ({C} row 4)")


def test_candidate_without_judgment():
    cands = candidates()
    assert error(cands, judgments(cands)[:2]) == (f"{C} row 3: candidate 2 has no judgment row in {J} (2 of 4 "
                                                  "candidates have none); redo the judge stage")


@pytest.mark.parametrize("row, expected", [
    ([1, 2], "expected a JSON object, got list"),
    ({"prompt_id": 0, "score": 1}, "missing field 'candidate_id'"),
    ({"candidate_id": 1.0, "prompt_id": 0, "score": 1}, "field 'candidate_id' must be an int or str id, got float"),
    ({"candidate_id": True, "prompt_id": 0, "score": 1}, "field 'candidate_id' must be an int or str id, got bool"),
    ({"candidate_id": 0, "score": 1}, "missing field 'prompt_id'"),
])
def test_malformed_rows(row, expected):
    cands = candidates()
    rows = judgments(cands)
    rows[0] = row
    assert error(cands, rows).startswith(f"{J} row 1: {expected}")


def test_malformed_candidates():
    cands = candidates()
    del cands[1]["response"]
    assert error(cands, judgments(candidates())) == f"{C} row 2: missing field 'response'"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
row_like = st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"candidate_id": json_values | st.integers(0, 5), "prompt_id": json_values | st.integers(0, 3),
                  "score": json_values, "source": st.sampled_from(["rubric", "pairwise", None, 3]),
                  "sources": json_values}))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(judged=st.lists(row_like, max_size=6))
def test_random_judgment_shapes_never_crash(judged):
    """Whatever the rows hold: None (valid) or one UserError line naming the file and row."""
    cands = candidates()
    try:
        check_judgments(cands, judged, J, candidates_where=C)
    except UserError as e:
        msg = str(e)
        assert "\n" not in msg and (msg.startswith(f"{J} row ") or msg.startswith(f"{C} row "))
