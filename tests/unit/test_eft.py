"""eft: human quality -> rubric score, and rubric-style targets that parse back to the score."""

import pytest

from seed_targets import human_to_score, target_for
from selfreward.judges.rubric_parse import parse_score


@pytest.mark.parametrize("quality, score", [
    (0, 0), (0.0, 0), (0.05, 0), (0.1, 1), (0.3, 2), (0.5, 3), (0.7, 4), (0.83, 4), (0.9, 5), (0.92, 5), (1, 5),
    (1.0, 5), (0.25, 1), (0.45, 2),
])
def test_human_to_score(quality, score):
    assert human_to_score(quality) == score
    assert isinstance(human_to_score(quality), int)


def test_half_rounds_up_not_to_even():
    assert human_to_score(0.5) == 3  # 2.5 -> 3 (Python's round() would give 2)


@pytest.mark.parametrize("quality", [-0.01, 1.01, 5, -1, float("nan")])
def test_human_to_score_out_of_range(quality):
    with pytest.raises(ValueError):
        human_to_score(quality)


@pytest.mark.parametrize("n", range(6))
def test_target_ends_with_score_and_parses_back(n):
    text = target_for(n)
    assert text.endswith(f"\nScore: {n}")
    assert text.splitlines()[-1] == f"Score: {n}"
    assert parse_score(text) == float(n)


def test_target_texts():
    assert target_for(0) == ("The response earns no points: it is not relevant to the question or gives no "
                             "related information.\nScore: 0")
    assert target_for(1).startswith("The response is relevant to the question, so it earns 1 point. "
                                    "It earns no more because it does not address a substantial part")
    assert "so it earns 3 points." in target_for(3)
    assert "It earns no more" not in target_for(5)
    assert target_for(5).startswith("The response is relevant to the question, addresses a substantial part of it,")
