"""Reward sources (selfreward.judges.sources) and forced choice (selfreward.judges.pairwise) on the fake backend and
small test doubles: no model, no torch."""

from __future__ import annotations

import re

import pytest

from selfreward.backends import LogProb, Sampling
from selfreward.backends.fake import FakeGenerator
from selfreward.judges import sources
from selfreward.judges.pairwise import CHOICE_PREFIX, MIN_OPTION_MASS, both_orders, p_first

GREEDY = Sampling(1, 0.0, 1.0, 32, 0)


def cands(*responses, prompt_id=0):
    return [{"id": prompt_id * 10 + i, "prompt_id": prompt_id, "prompt": f"question {prompt_id}", "response": r}
            for i, r in enumerate(responses)]


class ContentJudge:
    """Prefers the response containing "good" (P = 0.9 for it), whatever its slot; records its requests."""
    capabilities = frozenset({"generate", "option_probs"})

    def __init__(self):
        self.calls = []

    def option_probs(self, requests, prefixes, options, desc=""):
        self.calls.append((requests, prefixes, options))
        out = []
        for r in requests:
            text = r[0]["content"]
            a = re.search(r"<response_a>\n(.*?)\n</response_a>", text, re.S).group(1)
            b = re.search(r"<response_b>\n(.*?)\n</response_b>", text, re.S).group(1)
            out.append([0.9, 0.1] if "good" in a and "good" not in b else
                       [0.1, 0.9] if "good" in b and "good" not in a else [0.5, 0.5])
        return out


class VerdictJudge:
    """A server judge: no probabilities; always writes [[A]]."""
    capabilities = frozenset({"generate"})

    def generate(self, requests, sampling, desc=""):
        return [["A reads better. [[A]]"] for _ in requests]


def test_both_orders_are_asked_and_averaged():
    judge = ContentJudge()
    (row,) = both_orders(judge, [("q", "a good answer", "a bad answer")], GREEDY)
    (requests, prefixes, options), = judge.calls
    assert len(requests) == 2 and prefixes == [CHOICE_PREFIX] * 2 and options == ["A", "B"]
    slot_a = [r[0]["content"].split("<response_a>")[1].split("</response_a>")[0] for r in requests]
    assert "a good answer" in slot_a[0] and "a bad answer" in slot_a[1]  # a first, then b first
    assert row["ab"]["p_first"] == pytest.approx(0.9) and row["ba"]["p_first"] == pytest.approx(0.1)
    assert row["p_a"] == pytest.approx(0.9)


def test_a_judge_that_always_prefers_slot_a_gives_all_equal_scores():
    rows = sources.pairwise(FakeGenerator("judge"), cands("short", "a longer answer", "the longest answer of all"),
                            GREEDY)
    assert [r["score"] for r in rows] == [pytest.approx(0.5)] * 3
    assert all(c["ab"]["p_first"] == pytest.approx(0.7) for r in rows for c in r["comparisons"])


def test_pairwise_scores_rank_by_the_judges_preference_and_keep_evidence():
    rows = sources.pairwise(ContentJudge(), cands("bad one", "good one", "bad two") + cands("x", "good", prompt_id=1),
                            GREEDY)
    assert [r["source"] for r in rows] == ["pairwise"] * 5
    assert [round(r["score"], 3) for r in rows] == [0.3, 0.9, 0.3, 0.1, 0.9]
    first = rows[0]["comparisons"]
    assert [c["vs"] for c in first] == [1, 2]  # compared only within its prompt
    assert first[0]["p_win"] == pytest.approx(0.1) and first[1]["p_win"] == pytest.approx(0.5)


def test_without_probabilities_the_verdict_is_generated_and_position_bias_still_cancels():
    rows = sources.pairwise(VerdictJudge(), cands("one", "two"), GREEDY)
    assert [r["score"] for r in rows] == [0.5, 0.5]
    ev = rows[0]["comparisons"][0]
    assert ev["ab"]["verdict"] == ev["ba"]["verdict"] == "A" and "[[A]]" in ev["ab"]["raw"]


def test_too_little_option_mass_reads_no_preference():
    class Silent:
        capabilities = frozenset({"generate", "option_probs"})

        def option_probs(self, requests, prefixes, options, desc=""):
            return [[MIN_OPTION_MASS / 4, MIN_OPTION_MASS / 4] for _ in requests]

    (row,) = p_first(Silent(), [("q", "a", "b")], GREEDY)
    assert row["p_first"] is None
    rows = sources.pairwise(Silent(), cands("a", "b"), GREEDY)
    assert [r["score"] for r in rows] == [None, None]


def test_implicit_reward_by_hand():
    policy = [LogProb(-10.0, 4), LogProb(-3.0, 2)]
    reference = [LogProb(-12.0, 4), LogProb(-2.0, 2)]
    rows = sources.implicit(policy, reference, beta=0.1, length_normalized=False)
    assert [r["score"] for r in rows] == [pytest.approx(0.2), pytest.approx(-0.1)]
    assert rows[0] == {"source": "implicit", "score": pytest.approx(0.2), "logp": -10.0, "logp_ref": -12.0,
                       "tokens": 4, "beta": 0.1, "length_normalized": False}
    normed = sources.implicit(policy, reference, beta=0.5, length_normalized=True)
    assert [r["score"] for r in normed] == [pytest.approx(0.25), pytest.approx(-0.25)]


def test_implicit_needs_one_reference_per_response():
    with pytest.raises(ValueError):
        sources.implicit([LogProb(-1.0, 1)], [], beta=0.1, length_normalized=False)


def test_fake_backend_logprobs_differ_between_models():
    requests, responses = sources.logprob_requests(cands("one answer", "another"))
    a = FakeGenerator("m1").logprobs(requests, responses)
    b = FakeGenerator("m2").logprobs(requests, responses)
    assert a != b and all(x.tokens >= 1 for x in a)
