"""scoring: the score prefix, expected and sampled rows, and score_items in both modes through a fake generator."""

import math

import pytest

from selfreward.backends import Sampling
from selfreward.config import JudgeConfig
from selfreward.errors import UserError
from selfreward.judges import templates
from selfreward.judges.rubric import DIGITS, MIN_DIGIT_MASS, expected_row, requests_for, sampled_row, score_prefix
from selfreward.judges.scorers import SCORE_LINE_STOP, score_items

TEMPLATE = templates.load("rubric")
ITEMS = [("What is 2+2?", "4"), ("Name a color.", "Blue, like the sky."), ("Say hi.", "Hi!")]


class FakeGenerator:
    """generate() returns texts[i][j] for judgment j of request i; option_probs() returns probs[i]."""
    capabilities = frozenset({"generate", "option_probs"})

    def __init__(self, texts, probs=None):
        self.texts, self.probs = texts, probs
        self.calls = []

    def generate(self, requests, sampling, desc=""):
        self.calls.append(("generate", requests, sampling, desc))
        return [[self.texts[i][j] for j in range(sampling.n)] for i in range(len(requests))]

    def option_probs(self, requests, prefixes, options, desc=""):
        self.calls.append(("option_probs", requests, prefixes, options, desc))
        return [list(self.probs[i]) for i in range(len(requests))]

    def close(self):
        pass


class NoProbsGenerator:
    """A backend that can only sample text (as a server API would)."""
    capabilities = frozenset({"generate"})

    def __init__(self):
        self.calls = []

    def generate(self, requests, sampling, desc=""):
        self.calls.append(sampling)
        return [[f"Score: {i}"] * sampling.n for i in range(len(requests))]

    def close(self):
        pass


# --- score_prefix ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("judgment, prefix", [
    ("Good.\nScore: 4", "Good.\nScore:"),
    ("Good.\nScore:4", "Good.\nScore:"),
    ("Good.\nScore: 4\nThanks.", "Good.\nScore:"),
    # the LAST label, not the first: an earlier "Score:" may be a quote
    ('It says "Score: 5".\nScore: 2', 'It says "Score: 5".\nScore:'),
    ("Score: 3. Second thoughts: Score: 4", "Score: 3. Second thoughts: Score:"),
    # markdown around the label: the closing markup is part of it, the digit follows it
    ("Fine.\n**Score:** 4", "Fine.\n**Score:**"),
    ("Fine.\n**Score**: 4", "Fine.\n**Score**:"),
    ("Fine.\n__Score:__ 4", "Fine.\n__Score:__"),
    ("Fine.\n*Score:* 3 out of 5", "Fine.\n*Score:*"),
    ("fine. score : 1", "fine. score :"),
    ("Fine. SCORE: 1", "Fine. SCORE:"),
    ("Fine. Score\uff1a 2", "Fine. Score\uff1a"),  # full-width colon
    ("Fine.\nScore:", "Fine.\nScore:"),
    # no label: one is appended on a line of its own, trailing whitespace dropped
    ("It answers the question.  \n", "It answers the question.\nScore:"),
    ("The score is high", "The score is high\nScore:"),
    ("", "\nScore:"),
])
def test_score_prefix(judgment, prefix):
    assert score_prefix(judgment) == prefix


def test_score_prefix_label_needs_a_colon():
    assert score_prefix("Scores vary. Score 4") == "Scores vary. Score 4\nScore:"


# --- expected_row ---------------------------------------------------------------------------------------------

def test_expected_row_expectation_and_spread():
    # mass 0.8, renormalised: [1/8, 0, 2/8, 0, 3/8, 2/8]
    row = expected_row("Clear answer.\nScore: 4", [0.1, 0.0, 0.2, 0.0, 0.3, 0.2])
    p = [0.125, 0.0, 0.25, 0.0, 0.375, 0.25]
    mean = 0 * 0.125 + 2 * 0.25 + 4 * 0.375 + 5 * 0.25  # 3.25
    var = 0.125 * 3.25 ** 2 + 0.25 * 1.25 ** 2 + 0.375 * 0.75 ** 2 + 0.25 * 1.75 ** 2  # 2.6875
    assert mean == 3.25 and var == 2.6875
    assert row["mode"] == "expected"
    assert row["raw"] == ["Clear answer.\nScore: 4"]
    assert row["scores"] == [4.0]  # the written score, parsed for audit
    assert row["digit_mass"] == pytest.approx(0.8)
    assert row["digit_probs"] == pytest.approx(p)
    assert sum(row["digit_probs"]) == pytest.approx(1.0)
    assert row["score"] == pytest.approx(3.25)
    assert row["spread"] == pytest.approx(math.sqrt(2.6875))


def test_expected_row_is_renormalised_over_the_digits():
    # the same shape at a tenth of the mass gives the same score: only the digits' relative weights count
    a = expected_row("Score: 3", [0.0, 0.0, 0.0, 0.5, 0.5, 0.0])
    b = expected_row("Score: 3", [0.0, 0.0, 0.0, 0.05, 0.05, 0.0])
    assert a["score"] == pytest.approx(3.5) and b["score"] == pytest.approx(3.5)
    assert a["spread"] == pytest.approx(0.5) and b["spread"] == pytest.approx(0.5)
    assert a["digit_probs"] == pytest.approx([0, 0, 0, 0.5, 0.5, 0])
    assert b["digit_probs"] == pytest.approx([0, 0, 0, 0.5, 0.5, 0])
    assert b["digit_mass"] == pytest.approx(0.1)


def test_expected_row_certain_digit():
    row = expected_row("Score: 5", [0, 0, 0, 0, 0, 0.97])
    assert row["score"] == pytest.approx(5.0) and row["spread"] == pytest.approx(0.0)
    assert row["digit_probs"] == pytest.approx([0, 0, 0, 0, 0, 1])


def test_expected_row_score_does_not_come_from_the_text():
    row = expected_row("Score: 5", [0.9, 0, 0, 0, 0, 0])
    assert row["scores"] == [5.0] and row["score"] == pytest.approx(0.0)


@pytest.mark.parametrize("probs", [[0.0] * 6, [0.01] * 6, [0.0999, 0, 0, 0, 0, 0], [0.02, 0.02, 0.02, 0.02, 0.0, 0.0]])
def test_expected_row_too_little_digit_mass_is_unscored(probs):
    assert sum(probs) < MIN_DIGIT_MASS
    row = expected_row("No score written", probs)
    assert row["score"] is None and row["spread"] is None and row["digit_probs"] is None
    assert row["digit_mass"] == pytest.approx(sum(probs))
    assert row["scores"] == [None]
    assert row["raw"] == ["No score written"]


def test_expected_row_mass_at_the_threshold_is_scored():
    assert MIN_DIGIT_MASS == 0.1
    row = expected_row("Score: 0", [0.0, 0.0, 0.1, 0.0, 0.0, 0.0])
    assert row["score"] == pytest.approx(2.0) and row["spread"] == pytest.approx(0.0)


# --- sampled_row ----------------------------------------------------------------------------------------------

def test_sampled_row_mean_and_population_spread():
    row = sampled_row(["Good. Score: 2", "Great. Score: 4", "I cannot tell."])
    assert row == {"mode": "sample", "raw": ["Good. Score: 2", "Great. Score: 4", "I cannot tell."],
                   "scores": [2.0, 4.0, None], "score": 3.0, "spread": 1.0}


def test_sampled_row_nothing_parseable():
    row = sampled_row(["no", "Score: 9", "Score: N/A"])  # none, out of range, unreadable
    assert row["scores"] == [None, None, None]
    assert row["score"] is None and row["spread"] is None


def test_sampled_row_fractional_scores():
    row = sampled_row(["Score: 4.5", "**Score:** 3.5"])
    assert row["scores"] == [4.5, 3.5] and row["score"] == 4.0 and row["spread"] == 0.5


# --- score_items ----------------------------------------------------------------------------------------------

def test_score_items_sample_mode_passes_the_judge_sampling():
    texts = [[f"Reason {i}.{j}\nScore: {(i + j) % 6}" for j in range(4)] for i in range(3)]
    gen = FakeGenerator(texts)
    c = JudgeConfig(mode="sample", k=4, temperature=0.8, top_p=0.95, max_new_tokens=77)
    rows = score_items(gen, TEMPLATE, ITEMS, c, seed=123, desc="judge 1")
    (call,) = gen.calls
    assert call[0] == "generate"
    assert call[1] == requests_for(TEMPLATE, ITEMS)
    assert call[2] == Sampling(n=4, temperature=0.8, top_p=0.95, max_new_tokens=77, seed=123, stop=SCORE_LINE_STOP)
    assert call[3] == "judge 1"
    assert rows == [sampled_row(texts[i]) for i in range(3)]
    assert [r["scores"] for r in rows] == [[0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]]
    assert [r["score"] for r in rows] == [1.5, 2.5, 3.5]


def test_score_items_requests_are_rendered_user_messages():
    requests = requests_for(TEMPLATE, ITEMS[:1])
    assert len(requests) == 1 and len(requests[0]) == 1
    assert requests[0][0]["role"] == "user"
    content = requests[0][0]["content"]
    assert "<question>\nWhat is 2+2?\n</question>" in content and "<response>\n4\n</response>" in content


def test_score_items_expected_mode_one_greedy_judgment_then_digit_probs():
    texts = [["Plain.\nScore: 3"], ["Bold.\n**Score:** 5\nDone."], ["No label at all."]]
    probs = [[0, 0, 0, 1.0, 0, 0], [0.1, 0, 0, 0, 0, 0.3], [0.01] * 6]
    gen = FakeGenerator(texts, probs)
    c = JudgeConfig(mode="expected", k=5, temperature=0.7, top_p=0.9, max_new_tokens=50)
    rows = score_items(gen, TEMPLATE, ITEMS, c, seed=7, desc="eval")
    assert [call[0] for call in gen.calls] == ["generate", "option_probs"]
    _, requests, sampling, desc = gen.calls[0]
    assert requests == requests_for(TEMPLATE, ITEMS)
    # one greedy judgment, whatever k, temperature and top_p say
    assert sampling == Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=50, seed=7, stop=SCORE_LINE_STOP)
    assert desc == "eval"
    _, requests2, prefixes, options, desc2 = gen.calls[1]
    assert requests2 == requests
    assert prefixes == ["Plain.\nScore:", "Bold.\n**Score:**", "No label at all.\nScore:"]
    assert options == DIGITS == ["0", "1", "2", "3", "4", "5"]
    assert desc2 == "eval (score)"
    assert rows == [expected_row(t[0], p) for t, p in zip(texts, probs)]
    assert [r["score"] for r in rows] == [pytest.approx(3.0), pytest.approx(3.75), None]
    assert [r["scores"] for r in rows] == [[3.0], [5.0], [None]]


def test_score_items_expected_mode_needs_option_probs():
    gen = NoProbsGenerator()
    with pytest.raises(UserError) as e:
        score_items(gen, TEMPLATE, ITEMS, JudgeConfig(mode="expected"), seed=0)
    assert str(e.value) == ("judge.mode=expected needs next-token option probabilities, which the NoProbsGenerator "
                            "does not give; use judge.mode=sample, or a backend that gives them (transformers)")
    assert gen.calls == []  # refused before any judgment was generated


def test_score_items_sample_mode_works_without_option_probs():
    gen = NoProbsGenerator()
    rows = score_items(gen, TEMPLATE, ITEMS, JudgeConfig(mode="sample", k=2), seed=0)
    assert [r["score"] for r in rows] == [0.0, 1.0, 2.0]
    assert gen.calls == [Sampling(2, 0.7, 0.9, 256, 0, SCORE_LINE_STOP)]


def test_score_items_empty():
    gen = FakeGenerator([])
    assert score_items(gen, TEMPLATE, [], JudgeConfig(), seed=0) == []

