"""judge_metrics: every metric against values worked out by hand, the baselines, and the table."""

import math
import random

import pytest
from scipy.stats import kendalltau, spearmanr

from selfreward.judges.metrics import baseline_metrics, format_table, judge_metrics


def group(*responses, gid="g"):
    """responses as (text, human, score) triples."""
    return {"id": gid, "prompt": "p", "responses": [{"text": t, "human": h, "score": s} for t, h, s in responses]}


# Group A: r1 best; r3 and r4 tie for humans; r4 failed to parse. Group B: one pair the judge gets wrong.
A = group(("aaa", 2, 5), ("aa", 1, 3), ("a", 0, 3), ("aaaa", 0, None), gid="A")
B = group(("x", 1, 1), ("yy", 0, 4), gid="B")


def test_pairwise_counts_with_judge_ties_parse_failures_and_human_ties():
    m = judge_metrics([A, B])
    # A: (r1,r2) agree, (r1,r3) agree, (r1,r4) None -> tie, (r2,r3) equal scores -> tie, (r2,r4) None -> tie,
    # (r3,r4) human tie -> not counted. B: disagree.
    assert (m["pairs"], m["agree"], m["tie"], m["disagree"]) == (6, 2, 3, 1)
    assert m["pairwise_accuracy"] == pytest.approx(3.5 / 6)


def test_shorter_preferred_subset():
    m = judge_metrics([A, B])
    # preferred strictly shorter: (r1 len 3 > r4 len 4) tie, (r2 len 2 > r4 len 4) tie, B ("x" > "yy") disagree
    assert m["shorter_preferred_pairs"] == 3
    assert m["shorter_preferred_accuracy"] == pytest.approx(1 / 3)


def test_shorter_preferred_is_none_without_such_pairs():
    m = judge_metrics([group(("long", 1, 5), ("s", 0, 1))])
    assert m["shorter_preferred_pairs"] == 0 and m["shorter_preferred_accuracy"] is None


def test_length_correlation_pooled_over_scored_responses():
    # (score, length): (5,3) (3,2) (3,1) (1,1) (4,2); average ranks 5,2.5,2.5,1,4 vs 5,3.5,1.5,1.5,3.5
    assert judge_metrics([A, B])["length_correlation"] == pytest.approx(8 / math.sqrt(9.5 * 9))


@pytest.mark.parametrize("groups", [
    [group(("a", 1, 3), ("b", 0, None))],                 # 1 scored response
    [group(("a", 1, 3), ("b", 0, 3), ("c", 2, 3))],       # constant scores
    [group(("aa", 1, 3), ("bb", 0, 4), ("cc", 2, 5))],    # constant lengths
])
def test_length_correlation_undefined(groups):
    assert judge_metrics(groups)["length_correlation"] is None


def test_parse_failures_mean_and_histogram():
    m = judge_metrics([A, B])
    assert (m["responses"], m["parse_failures"]) == (6, 1)
    assert m["parse_failure_rate"] == pytest.approx(1 / 6)
    assert m["mean_score"] == pytest.approx(16 / 5)
    assert m["score_histogram"] == {"1": 1, "3": 2, "4": 1, "5": 1}


def test_histogram_rounds_half_up():
    m = judge_metrics([group(("a", 1, 4.5), ("b", 0, 2.5), ("c", 0, 0.4))])
    assert m["score_histogram"] == {"0": 1, "3": 1, "5": 1}


def test_group_metrics_on_a_and_b():
    m = judge_metrics([A, B])
    assert m["correlation_groups"] == 2
    assert m["exact_match"] == 0.0                       # A has a None, B is inverted
    assert (m["five_best"], m["five_best_n"]) == (1.0, 1)  # only r1 scored 5, and it is A's best
    assert m["top1"] == pytest.approx(0.5)               # A: r1 on top (None is lowest); B: the worse one on top
    assert m["spearman"] == pytest.approx(-0.5)          # A: None -> 0; B: -1
    assert m["kendall"] == pytest.approx(-0.5)


def test_exact_match_needs_judge_ties_where_humans_tie():
    same = judge_metrics([group(("a", 1, 2), ("b", 0, 1), ("c", 0, 1))])
    split = judge_metrics([group(("a", 1, 2), ("b", 0, 1), ("c", 0, 0))])
    assert same["exact_match"] == 1.0
    assert split["exact_match"] == 0.0 and split["pairwise_accuracy"] == 1.0


def test_group_of_three_known_spearman_and_kendall():
    m = judge_metrics([group(("a", 3, 2), ("b", 2, 3), ("c", 1, 1))])
    assert m["spearman"] == pytest.approx(0.5)    # d = 1, -1, 0: 1 - 6*2 / (3*8)
    assert m["kendall"] == pytest.approx(1 / 3)   # 2 concordant, 1 discordant of 3


def test_kendall_is_tau_b_with_human_ties():
    m = judge_metrics([group(("a", 2, 3), ("b", 1, 2), ("c", 1, 1))])
    assert m["kendall"] == pytest.approx(2 / math.sqrt(2 * 3))   # n0 = 3, one human-tied pair
    assert m["spearman"] == pytest.approx(1.5 / math.sqrt(1.5 * 2))


def test_correlations_equal_scipy_on_random_groups_with_ties():
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(2, 7)
        human = [rng.choice([0, 0.25, 0.5, 1]) for _ in range(n)]
        score = [rng.choice([1, 2, 3, 4, 5]) for _ in range(n)]
        if len(set(human)) < 2 or len(set(score)) < 2:
            continue
        m = judge_metrics([group(*[("t", h, s) for h, s in zip(human, score)])])
        assert m["spearman"] == pytest.approx(spearmanr(human, score).statistic, abs=1e-12)
        assert m["kendall"] == pytest.approx(kendalltau(human, score).statistic, abs=1e-12)


def test_constant_or_none_scores_give_zero_correlation():
    m = judge_metrics([group(("a", 1, 3), ("b", 0, 3)), group(("a", 1, 3), ("b", 0, None), ("c", 2, 1))])
    assert m["correlation_groups"] == 2 and m["spearman"] == 0.0 and m["kendall"] == 0.0


def test_five_best_with_ties_for_human_best():
    m = judge_metrics([
        group(("a", 1, 5), ("b", 1, 4.5), ("c", 0, 5), ("d", 0, 4.4)),  # a, b tie for best
        group(("a", 1, 5), ("b", 1, 5)),                                 # all tied: not a ranked group
    ])
    assert (m["five_best"], m["five_best_n"]) == (pytest.approx(2 / 3), 3)


def test_five_best_none_without_fives():
    m = judge_metrics([group(("a", 1, 4.4), ("b", 0, 4))])
    assert (m["five_best"], m["five_best_n"]) == (None, 0)


@pytest.mark.parametrize("responses, credit", [
    ([("a", 1, 4), ("b", 0, 4), ("c", 0, 2)], 1 / 2),     # 2 share the top score, 1 is best
    ([("a", 1, 3), ("b", 1, 3), ("c", 0, 3)], 2 / 3),     # all share it, 2 tie for human-best
    ([("a", 1, 4), ("b", 0, 5)], 0.0),
    ([("a", 1, None), ("b", 0, 2)], 0.0),                 # None ranks lowest
    ([("a", 1, 1), ("b", 0, None)], 1.0),
    ([("a", 1, None), ("b", 0, None)], 1 / 2),
])
def test_top1(responses, credit):
    assert judge_metrics([group(*responses)])["top1"] == pytest.approx(credit)


GROUPS = [
    group(("a", 1.0, 0), ("bb", 0.5, 0), ("ccc", 0.0, 0)),
    group(("dddd", 3, 0), ("e", 1, 0)),
    group(("f", 0.2, 0), ("gg", 0.9, 0), ("hhh", 0.9, 0), ("i", 0.1, 0)),
]


def scored(groups, fn):
    return [{**g, "responses": [{**r, "score": fn(r)} for r in g["responses"]]} for g in groups]


def test_constant_judge_is_exactly_half():
    m = judge_metrics(scored(GROUPS, lambda r: 3))
    assert m["pairwise_accuracy"] == 0.5 and m["agree"] == m["disagree"] == 0
    assert m["spearman"] == m["kendall"] == 0.0


def test_perfect_judge():
    m = judge_metrics(scored(GROUPS, lambda r: r["human"]))
    assert m["pairwise_accuracy"] == 1.0
    assert m["exact_match"] == m["top1"] == 1.0
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)


def test_inverted_judge():
    m = judge_metrics(scored(GROUPS, lambda r: -r["human"]))
    assert m["pairwise_accuracy"] == 0.0 and m["exact_match"] == 0.0 and m["top1"] == 0.0
    assert m["spearman"] == pytest.approx(-1.0) and m["kendall"] == pytest.approx(-1.0)


def test_missing_score_key_is_a_parse_failure():
    g = {"id": "g", "prompt": "p", "responses": [{"text": "a", "human": 1}, {"text": "b", "human": 0}]}
    m = judge_metrics([g])
    assert (m["parse_failures"], m["tie"], m["pairwise_accuracy"], m["mean_score"]) == (2, 1, 0.5, None)


def test_no_ranked_groups():
    m = judge_metrics([group(("a", 1, 5), ("b", 1, 2))])
    assert m["pairs"] == 0 and m["pairwise_accuracy"] is None
    assert m["correlation_groups"] == 0
    assert m["exact_match"] is m["top1"] is m["spearman"] is m["kendall"] is m["five_best"] is None
    assert judge_metrics([])["parse_failure_rate"] is None


def test_length_baseline_where_longer_wins():
    groups = [group(("a long answer", 1, None), ("short", 0, None)), group(("longer one", 2, None), ("x", 1, None))]
    length = baseline_metrics(groups, draws=1)["length"]
    assert length["pairwise_accuracy"] == 1.0 and length["parse_failures"] == 0
    assert length["shorter_preferred_pairs"] == 0
    mixed = groups + [group(("tiny", 1, None), ("much longer", 0, None))]
    length = baseline_metrics(mixed, draws=1)["length"]
    assert length["pairwise_accuracy"] == pytest.approx(2 / 3)
    assert (length["shorter_preferred_pairs"], length["shorter_preferred_accuracy"]) == (1, 0.0)
    assert groups[0]["responses"][0]["score"] is None     # the caller's groups are not changed


def test_random_baseline_is_half_and_seeded():
    groups = [group(("a" * (i % 7 + 1), 1, None), ("b" * (i % 5 + 1), 0, None), ("c", 0.5, None)) for i in range(60)]
    first = baseline_metrics(groups, seed=3)["random"]
    assert first["pairwise_accuracy"] == pytest.approx(0.5, abs=0.02)
    assert first["spearman"] == pytest.approx(0.0, abs=0.03)
    assert first["top1"] == pytest.approx(1 / 3, abs=0.03)
    assert first["five_best"] == pytest.approx(1 / 3, abs=0.05)    # defined in most draws, skipped where not
    assert first["parse_failure_rate"] == 0.0 and "score_histogram" not in first
    assert baseline_metrics(groups, seed=3)["random"] == first
    assert baseline_metrics(groups, seed=4)["random"] != first


def test_random_baseline_key_never_defined_is_none():
    rand = baseline_metrics([group(("a", 1, None), ("b", 0, None))], draws=5)["random"]
    assert rand["shorter_preferred_accuracy"] is None and rand["pairs"] == 1


def test_format_table():
    judge = judge_metrics([A, B])
    table = format_table([("judge", judge), ("random", baseline_metrics([A, B], draws=10)["random"])])
    header, row, rand = table.splitlines()
    for column in ("pairs", "pairwise acc %", "shorter-pref acc %", "len corr", "partial corr | len", "exact %",
                   "5-best %", "top1 %", "spearman", "kendall", "parse fail %"):
        assert column in header
    assert row.split() == ["judge", "6", "58.3", "33.3", "0.865", "-0.634", "0.0", "100.0", "50.0", "-0.500",
                           "-0.500", "16.7"]
    assert rand.startswith("random")
    none_row = format_table([("empty", judge_metrics([group(("a", 1, 5), ("b", 1, 2))]))]).splitlines()[1]
    assert none_row.split()[2:4] == ["-", "-"]


# --- partial correlation of score with the human value at fixed length ------------------------------------------

def _group(gid, rows):
    return {"id": gid, "prompt": "p", "responses": [{"text": "x" * n, "human": h, "score": s} for n, h, s in rows]}


def test_partial_correlation_against_a_hand_computation():
    import numpy as np
    from scipy.stats import spearmanr

    rows = [(10, 1.0, 2.0), (30, 2.0, 1.0), (20, 3.0, 5.0), (50, 4.0, 3.0), (40, 5.0, 4.5), (60, 0.0, 0.5)]
    m = judge_metrics([_group("g", rows)])
    s, h, n = zip(*((r[2], r[1], r[0]) for r in rows))
    r_sh, r_sl, r_hl = (spearmanr(a, b).statistic for a, b in ((s, h), (s, n), (h, n)))
    expected = (r_sh - r_sl * r_hl) / np.sqrt((1 - r_sl ** 2) * (1 - r_hl ** 2))
    assert m["partial_correlation"] == pytest.approx(expected)


def test_partial_correlation_of_the_length_heuristic_is_zero():
    rows = [(10, 1.0, None), (30, 2.0, None), (20, 3.0, None), (50, 0.0, None), (40, 5.0, None)]
    groups = [_group("g", rows)]
    assert baseline_metrics(groups)["length"]["partial_correlation"] == 0.0


def test_partial_correlation_rewards_a_judge_that_sees_past_length():
    # humans prefer the shorter answer within each length band; a judge that knows it beats length
    rows = [(10, 2.0, 2.0), (12, 1.0, 1.0), (30, 4.0, 4.0), (32, 3.0, 3.0), (50, 6.0, 6.0), (52, 5.0, 5.0)]
    assert judge_metrics([_group("g", rows)])["partial_correlation"] > 0.5
