"""judge: score parsing, aggregation, rendering and template loading (pure, no model)."""

import math

import pytest

from selfreward.errors import UserError
from selfreward.judges import templates
from selfreward.judges.rubric import aggregate
from selfreward.judges.rubric_parse import parse_score


def render(template: str, instruction: str, response: str) -> str:
    return templates.render(template, {"instruction": instruction, "response": response})


def load_template(spec: str) -> str:
    return templates.load("rubric", spec)


@pytest.mark.parametrize("text, expected", [
    ("Score: 4", 4.0),
    ("Score: 4.5", 4.5),
    ("score:4", 4.0),
    ("SCORE: 2", 2.0),
    ("Score: 4\nHope this helps", 4.0),
    ("Score: 4\nHope this helps, have a nice day!", 4.0),
    ("Adds 2 points, then 3 more, 10 words. Score: 3", 3.0),
    ("**Score:** 4", 4.0),
    ("Score: **4**", 4.0),
    ("Score: 4/5", 4.0),
    ("Score: 4 / 5", 4.0),
    ("Score: 4 out of 5", 4.0),
    ("Score: 4.5/5", 4.5),
    ("Score: 5/5", 5.0),
    ("Final score: 2", 2.0),
    ("Score：3", 3.0),
    ("The response is relevant.\nScore:\n1", 1.0),
    ("Score: 4\nTo repeat, Score: 4", 4.0),  # the same score twice
    ("Score: 4\nScore: 4.0", 4.0),  # the same value, written differently
    ("Score: 5", 5.0),
])
def test_parse_score_reads_the_score(text, expected):
    result = parse_score(text)
    assert result == expected
    assert isinstance(result, float)


def test_zero_is_a_valid_score_not_a_failure():
    assert parse_score("The response is off-topic.\nScore: 0") == 0.0
    assert parse_score("The response is off-topic.\nScore: 0") is not None


@pytest.mark.parametrize("text", [
    "",
    "This response is fine.",
    "I would give it 4 points.",  # no "Score:" label
    "Score: 6",
    "Score: -1",
    "Score: 12",
    "Score: 5.5",
    "Score: 8/10",
    "Score: 4/10",
    "Score: 3 out of 10",
    "Score: 4/5\nScore: 8/10",
    "underscore: 3",
    "Score: four",
    "Score:",
])
def test_parse_score_returns_none_when_unreadable(text):
    assert parse_score(text) is None


@pytest.mark.parametrize("text, expected", [("Score: 3\nScore: 4", 4.0), ("Score: 2 ... actually Score: 5", 5.0)])
def test_the_final_score_statement_counts(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text", ["", "no score here", "Score: 6", "Score: -1", "Score: 8/10"])
def test_unparseable_is_never_turned_into_a_number(text):
    # A peer bug turned parse failures into 0 or -1, which then became "rejected" answers.
    result = parse_score(text)
    assert result is None
    assert result != 0 and result != -1


def test_regression_well_formed_score_does_not_raise():
    # A peer's regex misuse made a well-formed `Score: 4` crash.
    assert parse_score("Score: 4") == 4.0


def test_max_score_is_five():
    from selfreward.judges.rubric_parse import MAX_SCORE

    assert MAX_SCORE == 5


def test_aggregate_mean_and_population_stdev():
    mean, spread = aggregate([3.0, 4.0, 5.0])
    assert mean == 4.0
    assert spread == pytest.approx(math.sqrt(2 / 3), abs=1e-12)


def test_aggregate_ignores_none():
    assert aggregate([None, 2.0, None, 4.0]) == (3.0, 1.0)
    assert aggregate([None, 4.0, None]) == (4.0, 0.0)


def test_aggregate_all_none_or_empty():
    assert aggregate([None, None, None]) == (None, None)
    assert aggregate([]) == (None, None)


def test_render_substitutes_both_placeholders_and_strips():
    out = render("Q: {instruction}\nA: {response}\nEnd", "  What is 2+2?\n", "\n 4 \n")
    assert out == "Q: What is 2+2?\nA: 4\nEnd"


def test_render_is_single_pass():
    # An instruction containing the literal text {response} must not get the response substituted into it.
    out = render("<q>{instruction}</q><r>{response}</r>", "Explain the {response} field", "RESP")
    assert out == "<q>Explain the {response} field</q><r>RESP</r>"
    out = render("<q>{instruction}</q><r>{response}</r>", "ask", "I say {instruction}")
    assert out == "<q>ask</q><r>I say {instruction}</r>"


def test_render_keeps_backslashes_and_other_braces():
    out = render('{"json": 1} {instruction} | {response} {other}', r"a\1b", r"c\g<0>d")
    assert out == r'{"json": 1} a\1b | c\g<0>d {other}'


def test_render_repeated_placeholders():
    assert render("{instruction}/{instruction}/{response}", "x", "y") == "x/x/y"


def test_builtin_template_has_both_placeholders():
    text = templates.load("rubric")
    assert text.count("{instruction}") == 1
    assert text.count("{response}") == 1
    assert "Score: <total points>" in text


def test_builtin_template_instructions_do_not_parse_as_a_score():
    # Echoing the rubric must not yield a score on its own.
    assert parse_score(templates.load("rubric")) is None


def test_custom_template_ok(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text("Rate {response} for {instruction}. Score: N", encoding="utf-8")
    assert templates.load("rubric", str(path)) == "Rate {response} for {instruction}. Score: N"


def test_custom_template_missing_response_placeholder(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text("Rate the answer to {instruction}.", encoding="utf-8")
    with pytest.raises(UserError) as e:
        templates.load("rubric", str(path))
    assert str(path) in str(e.value)
    assert "{response}" in str(e.value)
    assert "{instruction}" not in str(e.value)


def test_custom_template_missing_both_placeholders(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text("Rate it.", encoding="utf-8")
    with pytest.raises(UserError, match=r"lacks the placeholder\(s\) \{instruction\}, \{response\}"):
        templates.load("rubric", str(path))


def test_custom_template_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(UserError) as e:
        templates.load("rubric", str(path))
    assert str(e.value) == f"judge template not found: {path} (judge.template)"
