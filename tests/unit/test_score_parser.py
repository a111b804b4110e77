"""judges.rubric_parse: the rule "the judgment's final score statement" against a corpus of judge outputs
(hand-written cases and real outputs of the default model), the label index used by expected-scoring mode,
and properties on arbitrary text."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # only the property tests need it (pip install hypothesis); the corpus tests still run
    given = settings = st = None

from selfreward.judges import rubric_parse
from selfreward.judges.rubric_parse import MAX_SCORE, parse_score, score_label_end

CORPUS_PATH = Path(__file__).parent / "data" / "judge_outputs.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


def _id(row: dict) -> str:
    return f"{row['source']}:{row['text'][-40:]!r}"


def test_corpus_is_large_and_has_real_outputs():
    assert len(CORPUS) >= 60
    assert {r["source"] for r in CORPUS} <= {"hand", "default-model run"}
    assert sum(r["source"] == "default-model run" for r in CORPUS) >= 15
    assert any(r["expected"] is None for r in CORPUS) and any(r["expected"] is not None for r in CORPUS)


@pytest.mark.parametrize("row", CORPUS, ids=_id)
def test_corpus(row):
    result = parse_score(row["text"])
    assert result == row["expected"]
    if result is not None:
        assert isinstance(result, float)


@pytest.mark.parametrize("text, expected", [
    # the failures reported against the old parser
    ("Score: 1+1+1+1 = 4", 4.0),
    ("Score: 2 + 1 = 3", 3.0),
    ("Score: 4,5", None),
    ("Score: 1e1", None),
    ("Score: 3\nConfidence score: 0.9", 3.0),
    ("Sub-score: 2 … Final Score: 3", 3.0),
    ('It says "score: 5" is for experts.\nScore: 3', 3.0),
])
def test_reported_cases(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text", ["", "no score here", "Score: 6", "Score: -1", "Score: 8/10", "Score: N/A",
                                  "Score: 2\nScore: N/A", "Score: 4\nScore:", "Score: 4, 5"])
def test_unreadable_is_none_never_a_default_or_an_earlier_value(text):
    assert parse_score(text) is None


def test_zero_is_a_score():
    assert parse_score("Off-topic.\nScore: 0") == 0.0


def test_max_score():
    assert MAX_SCORE == 5
    assert parse_score("Score: 5") == 5.0
    assert parse_score("Score: 5.01") is None


def test_docstring_states_the_rule():
    doc = rubric_parse.__doc__
    assert "final score statement" in doc
    for word in ("final", "total", "overall", "None", "arithmetic", "out of"):
        assert word in doc


# ---- score_label_end ----

@pytest.mark.parametrize("text, end", [
    ("Score: 4", len("Score:")),
    ("**Score:** 4", len("**Score:**")),
    ("__Score:__ 4", len("__Score:__")),
    ("**Score: 4**", len("**Score:")),
    ("Score：3", len("Score：")),
    ("Good answer.\nScore: 3\nConfidence score: 0.9", len("Good answer.\nScore:")),
    ("Sub-score: 2. Final Score: 3", len("Sub-score: 2. Final Score:")),
    ("Score: N/A", len("Score:")),  # a statement, unreadable: the digit would still follow here
    ("Score: 2\nScore:", len("Score: 2\nScore:")),
])
def test_score_label_end(text, end):
    assert score_label_end(text) == end


@pytest.mark.parametrize("text", ["", "The answer is fine.", "Confidence score: 0.9", "partial score: 3",
                                  "underscore: 3", "Rating: 4"])
def test_score_label_end_none_without_a_statement(text):
    assert score_label_end(text) is None
    assert parse_score(text) is None


@pytest.mark.parametrize("row", CORPUS, ids=_id)
def test_score_label_end_agrees_with_parse_score(row):
    """Cutting the text where score_label_end says and writing a digit there gives that digit: the index is the
    label of the very statement parse_score reads."""
    text, end = row["text"], score_label_end(row["text"])
    if end is None:
        assert parse_score(text) is None
        return
    assert re.search(r"score[^\n]*[:：][*_]*\Z", text[:end], re.IGNORECASE)
    for digit in range(MAX_SCORE + 1):
        assert parse_score(text[:end] + f" {digit}") == digit


# ---- robustness ----

@pytest.mark.parametrize("text", [
    "Score:" + " " * 200_000 + "x",
    "score: " * 20_000,
    "Score: " + "1+" * 50_000,
    "a" * 100_000 + "score:",
    "Score: " + "9" * 10_000,
    "Score: 1" + " \t" * 50_000 + "x",
    ("Sub-" + " " * 100) * 2_000 + "score: 4",
])
def test_long_inputs_are_fast(text):
    start = time.perf_counter()
    result = parse_score(text)
    score_label_end(text)
    assert result is None or 0 <= result <= MAX_SCORE
    # a guard against catastrophic regex backtracking (hours), not a speed target: generous on a busy machine
    assert time.perf_counter() - start < 30.0


needs_hypothesis = pytest.mark.skipif(given is None, reason="hypothesis is not installed")

if given is not None:
    def _check(text: str) -> float | None:
        result = parse_score(text)
        end = score_label_end(text)
        assert result is None or (isinstance(result, float) and 0 <= result <= MAX_SCORE)
        assert end is None or (isinstance(end, int) and 0 < end <= len(text))
        if result is not None:
            assert end is not None
        return result

    @settings(max_examples=300, deadline=None)
    @given(st.text())
    def test_never_raises_on_arbitrary_text(text):
        _check(text)

    _PIECES = ["Score", "score", "SCORE", ":", "：", " ", "\n", "**", "__", "4", "5", "0", "12", ".", ",", "/", "+",
               "=", "-", "e", "%", "out of ", "final ", "Sub-", "confidence ", "points", "N/A", "(", ")", "<", ">", "x"]

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
    def test_never_raises_on_score_like_text(text):
        _check(text)

    _SCORES = st.sampled_from([0, 1, 2, 3, 4, 5, 0.5, 2.5, 4.5])
    _NO_LABEL = st.text(max_size=80).filter(
        lambda s: not re.search("score", s.translate(rubric_parse._NORMALISE), re.IGNORECASE))

    @settings(max_examples=300, deadline=None)
    @given(_NO_LABEL, _SCORES, _NO_LABEL)
    def test_a_final_score_line_is_read_whatever_surrounds_it(before, value, after):
        text = f"{before}\nScore: {value}\n{after}"
        assert parse_score(text) == value
        assert score_label_end(text) == len(before) + len("\nScore:")
else:
    @needs_hypothesis
    def test_properties():  # a visible skip where hypothesis is missing
        pass
