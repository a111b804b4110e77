"""prompts: cleaning generated tasks, the Self-Instruct filters, ROUGE-L equal to rouge_score's."""

import random

import pytest
from rouge_score import rouge_scorer

from selfreward.prompts import PromptFilter, clean, draw_examples, few_shot_request, normalize


@pytest.mark.parametrize("raw, expected", [
    ("Write a poem about cats.", "Write a poem about cats."),
    ("  Explain recursion.  \n", "Explain recursion."),
    ("Task 9: Write a poem about cats.", "Write a poem about cats."),
    ("task 9:Write a poem about cats.", "Write a poem about cats."),
    ("9. Write a poem about cats.", "Write a poem about cats."),
    ("9) Write a poem about cats.", "Write a poem about cats."),
    ("New task: Explain X.", "Explain X."),
    ("Instruction 3: Do Y.", "Do Y."),
    ('"Write a poem about cats."', "Write a poem about cats."),
    ("'Write a poem about cats.'", "Write a poem about cats."),
    ('Task 9: "Write a poem about cats."', "Write a poem about cats."),
    ("Write a poem about cats.\n\nThis task is creative.", "Write a poem about cats."),
    ("9. Write a poem about cats.\n10. Write a song about dogs.", "Write a poem about cats."),
    ("Write a poem about cats.\nTask 10: Write a song.", "Write a poem about cats."),
    ("Write a poem about cats.\n 2) Write a song.", "Write a poem about cats."),
    ("List three fruits\nthat are red.", "List three fruits\nthat are red."),  # a line break inside the task stays
    ('"Unbalanced quote.', '"Unbalanced quote.'),
    ("", ""),
    ("\n\n", ""),
])
def test_clean(raw, expected):
    assert clean(raw) == expected


def test_normalize():
    assert normalize("  Write A\n poem\tNOW ") == "write a poem now"


def test_few_shot_request_lists_examples_numbered_on_one_line():
    text = few_shot_request(["First  task\nspans lines", "Second task"])
    assert "1. First task spans lines\n2. Second task" in text
    assert "{examples}" not in text


def test_draw_examples_seeded_and_bounded():
    pool = [f"task {i}" for i in range(20)]
    a = draw_examples(pool, 8, random.Random(3))
    b = draw_examples(pool, 8, random.Random(3))
    assert a == b
    assert len(a) == 8 and len(set(a)) == 8 and set(a) <= set(pool)
    assert sorted(draw_examples(pool[:3], 8, random.Random(0))) == sorted(pool[:3])


def make_filter(**kw):
    args = {"min_words": 3, "max_words": 10, "rouge_l_max": 0.7, "banned_words": ["image", "go to"]}
    args.update(kw)
    return PromptFilter(**args)


def test_reason_empty():
    assert make_filter().reason("") == "empty"


def test_reason_too_short():
    assert make_filter().reason("Explain recursion") == "too short"  # 2 words < 3


def test_reason_too_long():
    assert make_filter().reason(" ".join(["word"] * 11)) == "too long"


def test_word_limits_are_inclusive():
    f = make_filter()
    assert f.reason("Explain recursion simply") is None  # exactly 3
    assert f.reason("alpha beta gamma delta epsilon zeta eta theta iota kappa") is None  # exactly 10


def test_reason_banned_word():
    f = make_filter()
    assert f.reason("Describe this image in detail") == "banned word"
    assert f.reason("Describe this IMAGE in detail") == "banned word"
    assert f.reason("Tell me where to go to lunch") == "banned word"


@pytest.mark.parametrize("text", [
    "I'm ready to help with your request.", "I am an AI assistant built for you.", "Sure, here is a poem",
    "Here's a rewritten version of the text:", "As an AI, I cannot browse the web.", "I'd be happy to help you",
])
def test_reason_reads_as_a_reply(text):
    assert make_filter().reason(text) == "reads as a reply"


@pytest.mark.parametrize("text", ["Here comes the sun: who wrote it?", "Is it sure that Pluto is a planet?",
                                  "I'm planning a trip to Rome, what should I see?"])
def test_requests_that_merely_start_alike_are_kept(text):
    assert make_filter().reason(text) is None


def test_banned_word_matches_whole_words_only():
    assert make_filter().reason("Describe the imagery of the poem") is None


def test_no_banned_words():
    assert make_filter(banned_words=[]).reason("Describe this image in detail") is None


def test_reason_duplicate_after_normalization():
    f = make_filter()
    assert f.reason("Write a haiku about autumn") is None
    assert f.reason("  write a HAIKU   about\nautumn") == "duplicate"


def test_reason_similar_rouge_l():
    f = make_filter()
    assert f.reason("Write a short poem about the sea") is None
    assert f.reason("Write a long poem about the sea at night") == "similar (ROUGE-L)"  # ROUGE-L 0.75


def test_kept_when_dissimilar():
    f = make_filter()
    assert f.reason("Write a short poem about the sea") is None
    assert f.reason("Explain how vaccines train the immune system") is None


def test_rejected_prompt_is_not_remembered():
    f = make_filter()
    assert f.reason("Describe this image in detail") == "banned word"
    assert f.reason("Summarize the plot of Hamlet") is None
    assert f.reason("Summarize the plot of Hamlet") == "duplicate"
    f2 = make_filter()
    assert f2.reason("one two") == "too short"
    assert f2.reason("one two three") is None  # not a duplicate of a rejected text


def test_kept_prompt_becomes_a_reference():
    f = make_filter()
    first = "Write a short poem about the sea"
    near = "Write a long poem about the sea at night"
    assert f.reason(near) is None  # nothing kept yet
    f2 = make_filter()
    assert f2.reason(first) is None
    assert f2.reason(near) == "similar (ROUGE-L)"


def test_add_reference_marks_seed_prompts():
    f = make_filter()
    f.add_reference("Write a short poem about the sea")
    assert f.reason("write a short poem about the sea") == "duplicate"
    assert f.reason("Write a long poem about the sea at night") == "similar (ROUGE-L)"


SCORER = rouge_scorer.RougeScorer(["rougeL"])
PAIRS = [
    ("Write a short poem about the sea", "Write a long poem about the sea at night"),
    ("Explain how photosynthesis works in plants", "Describe the process of photosynthesis"),
    ("the cat sat on the mat today", "the mat sat on the cat today"),
    ("List 3 ways to save money, quickly!", "list three ways to SAVE money quickly"),
    ("Translate the sentence into French please", "Give me a recipe for lentil soup tonight"),
]


@pytest.mark.parametrize("a, b", PAIRS)
def test_filter_rouge_l_equals_rouge_score(a, b):
    expected = SCORER.score(a, b)["rougeL"].fmeasure
    # the filter's own tokenizer and LCS give the same number
    f = make_filter(max_words=50)
    assert rouge_scorer._score_lcs(f._tokenizer.tokenize(a), f._tokenizer.tokenize(b)).fmeasure == expected
    # and it is that exact number the filter compares with rouge_l_max (rejects only when strictly above)
    if expected > 0:
        at = make_filter(max_words=50, rouge_l_max=expected, banned_words=[])
        at.add_reference(a)
        assert at.reason(b) is None
        below = make_filter(max_words=50, rouge_l_max=expected - 1e-9, banned_words=[])
        below.add_reference(a)
        assert below.reason(b) == "similar (ROUGE-L)"


def test_rouge_values_of_the_fixture_pairs():
    # pin the numbers, so a change of tokenizer (e.g. stemming, case, punctuation) shows up here
    values = [SCORER.score(a, b)["rougeL"].fmeasure for a, b in PAIRS]
    assert values == pytest.approx([0.75, 2 / 11, 5 / 7, 6 / 7, 0.0], abs=1e-12)
