"""Stop strings (Sampling.stop): where a completion ends, the backends without torch (fake, openai), and the
judges that stop at their score line, verdict or rating without changing what is read from them."""

from __future__ import annotations

import pytest

from openai_stub import completion, stub_server
from selfreward.backends import Completion, Sampling, stop_end
from selfreward.backends import fake as fake_backend
from selfreward.backends.fake import FakeGenerator
from selfreward.backends.openai import OpenAIGenerator
from selfreward.evals.mtbench import RATING_STOP, parse_rating
from selfreward.judges.pairwise import VERDICT_STOP, parse_verdict
from selfreward.judges.rubric_parse import parse_score
from selfreward.judges.scorers import SCORE_LINE_STOP


def test_stop_end_is_just_after_the_stop_string_completed_first():
    assert stop_end("Good. Score: 4\nMore text", ("Score: 4\n",)) == len("Good. Score: 4\n")
    assert stop_end("no stop here", ("Score: 4\n",)) is None
    assert stop_end("anything", ()) is None
    # the earliest end wins, whichever string starts first
    assert stop_end("xx ab cd", ("b cd", "ab")) == len("xx ab")
    assert stop_end("xx ab cd", ("x", "ab")) == 1
    assert stop_end("text", ("",)) is None  # an empty stop string stops nothing


def test_sampling_takes_stop_strings_and_stays_hashable():
    s = Sampling(1, 0.0, 1.0, 8, 0, ("]]",))
    assert s.stop == ("]]",) and hash(s) == hash(Sampling(stop=("]]",), max_new_tokens=8))
    assert Sampling().stop == ()


def test_fake_backend_ends_at_a_stop_string():
    gen = FakeGenerator("m")
    ask = [[{"role": "user", "content": "Compare. [[A]] or [[B]]"}]]
    assert gen.complete(ask, Sampling(stop=("better.",))) == [[Completion("The first is better.", True)]]
    assert gen.complete(ask, Sampling(stop=("nowhere",))) == [[Completion("The first is better. [[A]]", True)]]
    # a cut at max_new_tokens (4 characters per token) comes first: unfinished, as before
    assert gen.complete(ask, Sampling(max_new_tokens=2, stop=("better.",))) == [[Completion("The firs", False)]]


@pytest.fixture
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")


def test_openai_applies_the_stop_strings_to_the_text_it_gets(_no_proxy):
    """The API would drop the stop string and not say which one it was: the stops are not sent, and the text the
    server wrote is cut right after the first, which stays in it."""
    def answer(body, index):
        reply = completion(["Fine answer.\nScore: 3\nAnd then more."])
        reply["choices"][0]["finish_reason"] = "length"  # cut off further on: the stop string ended it first
        return 200, reply

    with stub_server(answer) as (url, requests):
        gen = OpenAIGenerator("judge", url, backoff_s=0.001)
        out = gen.complete([[{"role": "user", "content": "q"}]],
                           Sampling(n=1, temperature=0.0, max_new_tokens=10, stop=SCORE_LINE_STOP))
    assert out == [[Completion("Fine answer.\nScore: 3", True)]]
    assert "stop" not in requests[0]["body"]


def test_the_judges_ask_for_their_stops():
    from selfreward.config import JudgeConfig
    from selfreward.evals.mtbench import grade_single
    from selfreward.judges import templates
    from selfreward.judges.pairwise import p_first, pairwise_verdicts
    from selfreward.judges.scorers import score_items

    fake_backend.CALLS.clear()
    gen = FakeGenerator("judge")
    items = [("What is 2+2?", "4"), ("Name a colour.", "Blue")]
    for mode in ("sample", "expected"):
        score_items(gen, templates.load("rubric"), items, JudgeConfig(mode=mode, k=2), seed=0)
    pairwise_verdicts(gen, ["q"], ["a"], ["b"], Sampling(max_new_tokens=16))
    generate_only = type("GenerateOnly", (), {"capabilities": frozenset({"generate"}), "generate": gen.generate})()
    p_first(generate_only, [("q", "a", "b")], Sampling(max_new_tokens=16))
    item = {"question_id": 1, "category": "writing", "turns": ["Write."], "answers": ["Done."], "reference": None}
    grade_single(gen, [item], Sampling(max_new_tokens=16))
    stops = [c["sampling"].stop for c in fake_backend.CALLS if c["method"] == "generate"]
    assert stops == [SCORE_LINE_STOP, SCORE_LINE_STOP, VERDICT_STOP, VERDICT_STOP, RATING_STOP]


@pytest.mark.parametrize("stop", SCORE_LINE_STOP)
def test_a_judgment_cut_at_its_score_line_reads_as_that_line_says(stop):
    value = float(stop.split()[1][0])
    for before in ("", "The response is relevant, so it earns 4 points.\n", "Score (0-5): about 5\nSo:\n",
                   "Total ", "Final "):
        text = before + stop + "Explanation: more words. Score: 1"
        end = stop_end(text, SCORE_LINE_STOP)
        assert end == len(before + stop)
        assert parse_score(text[:end].strip()) == value


@pytest.mark.parametrize("stop", VERDICT_STOP)
def test_a_judgment_cut_at_its_verdict_reads_that_verdict(stop):
    text = "A is more complete and accurate.\n" + stop + "\nOn second thought [[B]]"
    end = stop_end(text, VERDICT_STOP)
    assert parse_verdict(text[:end]) == parse_verdict(stop) and parse_verdict(stop) is not None


def test_a_rating_cut_at_its_first_double_bracket_reads_as_before():
    """parse_rating reads the first "[[x]]": stopping right after the first [[N]] changes nothing it reads."""
    for text in ("Good answer. Rating: [[7]] and later [[3]]", "Rating: [[7.5]] then [[8]]", "Rating: [8] [[4]]",
                 "Rating: [[11]] then [[5]]", "No rating [6]", "Rating: [[10]]"):
        end = stop_end(text, RATING_STOP)
        assert parse_rating(text if end is None else text[:end]) == parse_rating(text), text
