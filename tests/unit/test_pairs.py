"""pairs.build_pairs: highest vs lowest mean score per prompt, grouped by prompt id."""

import random
from collections import Counter

from selfreward.pairs import build_pairs


def cand(cid, pid, response=None):
    return {"id": cid, "prompt_id": pid, "prompt": f"prompt {pid}", "response": response or f"answer {cid}"}


def judged(cid, score, pid=None):
    return {"candidate_id": cid, "prompt_id": pid, "score": score}


def test_single_prompt_pair_fields():
    cands = [cand(0, 0), cand(1, 0), cand(2, 0), cand(3, 0)]
    judg = [judged(0, 3.0), judged(1, 4.5), judged(2, 1.0), judged(3, 2.0)]
    pairs, dropped = build_pairs(cands, judg)
    assert pairs == [{
        "prompt_id": 0, "prompt": "prompt 0",
        "chosen_id": 1, "chosen": "answer 1", "chosen_score": 4.5,
        "rejected_id": 2, "rejected": "answer 2", "rejected_score": 1.0,
    }]
    assert dropped == Counter()


def test_tie_between_max_and_min_is_dropped():
    cands = [cand(i, 0) for i in range(4)]
    pairs, dropped = build_pairs(cands, [judged(i, 3.0) for i in range(4)])
    assert pairs == []
    assert dropped == Counter({"tie": 1})


def test_none_scores_are_ignored():
    cands = [cand(i, 0) for i in range(4)]
    judg = [judged(0, None), judged(1, 2.0), judged(2, None), judged(3, 5.0)]
    pairs, dropped = build_pairs(cands, judg)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [(3, 1)]
    assert dropped == Counter()


def test_none_scores_leave_a_tie():
    cands = [cand(i, 0) for i in range(3)]
    pairs, dropped = build_pairs(cands, [judged(0, 4.0), judged(1, None), judged(2, 4.0)])
    assert pairs == []
    assert dropped == Counter({"tie": 1})


def test_single_valid_score_is_dropped():
    cands = [cand(i, 0) for i in range(4)]
    judg = [judged(0, None), judged(1, None), judged(2, 5.0), judged(3, None)]
    pairs, dropped = build_pairs(cands, judg)
    assert pairs == []
    assert dropped == Counter({"fewer than 2 valid scores": 1})


def test_candidate_without_judgment_is_ignored():
    cands = [cand(i, 0) for i in range(3)]
    pairs, dropped = build_pairs(cands, [judged(1, 1.0)])
    assert pairs == []
    assert dropped == Counter({"fewer than 2 valid scores": 1})


def test_ties_among_best_and_worst_go_to_earliest_candidate():
    cands = [cand(10, 0), cand(11, 0), cand(12, 0), cand(13, 0)]
    judg = [judged(10, 2.0), judged(11, 5.0), judged(12, 2.0), judged(13, 5.0)]
    pairs, _ = build_pairs(cands, judg)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [(11, 10)]
    # Order of the candidate list decides, not the id.
    pairs, _ = build_pairs(list(reversed(cands)), judg)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [(13, 12)]


def test_fractional_mean_scores():
    cands = [cand(i, 0) for i in range(3)]
    judg = [judged(0, 10 / 3), judged(1, 11 / 3), judged(2, 3.0)]
    pairs, _ = build_pairs(cands, judg)
    assert (pairs[0]["chosen_id"], pairs[0]["chosen_score"]) == (1, 11 / 3)
    assert (pairs[0]["rejected_id"], pairs[0]["rejected_score"]) == (2, 3.0)


def test_drop_does_not_stop_later_prompts():
    # A peer used `break` instead of `continue`: everything after the first dropped prompt was lost.
    cands = [cand(pid * 4 + j, pid) for pid in range(4) for j in range(4)]
    scores = {
        0: [1.0, 2.0, 3.0, 4.0],       # pair (3, 0)
        1: [3.0, 3.0, 3.0, 3.0],       # tie
        2: [None, None, 5.0, None],    # fewer than 2 valid
        3: [2.0, 5.0, 1.0, None],      # pair (13, 14)
    }
    judg = [judged(pid * 4 + j, s) for pid, row in scores.items() for j, s in enumerate(row)]
    pairs, dropped = build_pairs(cands, judg)
    assert [(p["prompt_id"], p["chosen_id"], p["rejected_id"]) for p in pairs] == [(0, 3, 0), (3, 13, 14)]
    assert dropped == Counter({"tie": 1, "fewer than 2 valid scores": 1})


def test_first_prompt_dropped_later_prompts_kept():
    cands = [cand(pid * 2 + j, pid) for pid in range(3) for j in range(2)]
    judg = [judged(0, 2.0), judged(1, 2.0), judged(2, 1.0), judged(3, 4.0), judged(4, 5.0), judged(5, 0.0)]
    pairs, dropped = build_pairs(cands, judg)
    assert [(p["prompt_id"], p["chosen_id"], p["rejected_id"]) for p in pairs] == [(1, 3, 2), (2, 4, 5)]
    assert dropped == Counter({"tie": 1})


def test_regression_many_prompts_shuffled_ids_sort_differently_as_strings():
    # A peer sorted ids as strings ("10" < "2") and grouped in fours, pairing answers of different prompts.
    n_prompts, n = 13, 4
    rng = random.Random(1234)
    expected = {}
    cands, judg = [], []
    for pid in range(n_prompts):
        scores = [1.0, 2.0, 3.0, 4.0]
        rng.shuffle(scores)  # distinct scores: no ties, so the result does not depend on list order
        ids = [pid * n + j for j in range(n)]
        for cid, s in zip(ids, scores):
            cands.append({"id": cid, "prompt_id": pid, "prompt": f"prompt {pid}", "response": f"answer {cid}"})
            judg.append({"candidate_id": cid, "prompt_id": pid, "score": s})
        expected[pid] = (ids[scores.index(4.0)], ids[scores.index(1.0)])
    rng.shuffle(cands)
    rng.shuffle(judg)
    assert sorted(str(c["id"]) for c in cands) != [str(i) for i in range(n_prompts * n)]  # string order differs

    pairs, dropped = build_pairs(cands, judg)

    assert dropped == Counter()
    assert len(pairs) == n_prompts
    got = {p["prompt_id"]: (p["chosen_id"], p["rejected_id"]) for p in pairs}
    assert got == expected
    for p in pairs:
        assert p["chosen_id"] // n == p["prompt_id"]
        assert p["rejected_id"] // n == p["prompt_id"]
        assert p["prompt"] == f"prompt {p['prompt_id']}"
        assert p["chosen"] == f"answer {p['chosen_id']}"
        assert p["rejected"] == f"answer {p['rejected_id']}"
        assert (p["chosen_score"], p["rejected_score"]) == (4.0, 1.0)


def test_string_prompt_ids_are_grouped_by_value():
    cands = [cand("a1", "p10"), cand("b1", "p2"), cand("a2", "p10"), cand("b2", "p2")]
    judg = [judged("a1", 1.0), judged("b1", 5.0), judged("a2", 2.0), judged("b2", 0.0)]
    pairs, _ = build_pairs(cands, judg)
    got = {p["prompt_id"]: (p["chosen_id"], p["rejected_id"]) for p in pairs}
    assert got == {"p10": ("a2", "a1"), "p2": ("b1", "b2")}


def test_empty_input():
    pairs, dropped = build_pairs([], [])
    assert pairs == []
    assert dropped == Counter()


# --- length rules (pairs.length_control, pairs.length_penalty) -------------------------------------------------

from selfreward.pairs import PENALTY_GRID, auto_length_penalty, length_gap, rho_for  # noqa: E402


def table(*rows):
    """candidates and judgments of one prompt from (score, response length) rows; ids 0, 1, ..."""
    cands = [cand(i, 0, "x" * n) for i, (_, n) in enumerate(rows)]
    return cands, [judged(i, s) for i, (s, _) in enumerate(rows)]


def ids(pairs):
    return [(p["chosen_id"], p["rejected_id"]) for p in pairs]


def test_length_control_picks_shortest_top_and_longest_bottom():
    # scores 5, 4.6, 3, 1.2, 1; rho 0.1: top tier >= 4.6, bottom tier <= 1.4
    cands, judg = table((5.0, 900), (4.6, 100), (3.0, 50), (1.2, 800), (1.0, 20))
    assert ids(build_pairs(cands, judg)[0]) == [(0, 4)]  # plain: max vs min
    assert ids(build_pairs(cands, judg, length_control=0.1)[0]) == [(1, 3)]
    # the pair keeps the unpenalised scores
    (p,), _ = build_pairs(cands, judg, length_control=0.1)
    assert (p["chosen_score"], p["rejected_score"]) == (4.6, 1.2)


def test_length_control_zero_breaks_ties_by_length():
    cands, judg = table((5.0, 300), (5.0, 100), (1.0, 10), (1.0, 70))
    assert ids(build_pairs(cands, judg)[0]) == [(0, 2)]  # plain: the earliest of each tie
    assert ids(build_pairs(cands, judg, length_control=0.0)[0]) == [(1, 3)]


def test_length_control_single_tier_is_a_tie():
    cands, judg = table((3.0, 10), (3.0, 20), (3.0, 30))
    pairs, dropped = build_pairs(cands, judg, length_control=0.5)
    assert pairs == [] and dropped == Counter({"tie": 1})


def test_length_control_overlapping_tiers_never_pair_a_worse_chosen():
    # rho 1: both tiers are everything; the shortest (score 1) would be "chosen" over the longest (score 5)
    cands, judg = table((5.0, 100), (1.0, 10))
    pairs, dropped = build_pairs(cands, judg, length_control=1.0)
    assert pairs == [] and dropped == Counter({"tie": 1})


def test_length_penalty_lowers_long_answers():
    cands, judg = table((4.0, 1000), (3.5, 100), (1.0, 50))
    assert ids(build_pairs(cands, judg)[0]) == [(0, 2)]
    # 4 - 0.001 * 1000 = 3 < 3.5 - 0.1 = 3.4: the short answer is chosen; the rejected one is now the long one
    assert ids(build_pairs(cands, judg, length_penalty=0.001)[0]) == [(1, 2)]
    assert ids(build_pairs(cands, judg, length_penalty=0.004)[0]) == [(1, 0)]


def test_auto_penalty_equalises_mean_lengths():
    """Three prompts whose judge prefers the longer answer: auto alpha makes chosen and rejected as long on
    average as the grid allows, and is 0 when the pairs are already balanced."""
    cands, judg = [], []
    for pid, rows in enumerate([[(5.0, 600), (4.0, 200), (1.0, 100)], [(4.5, 500), (4.0, 250), (2.0, 200)],
                                [(3.0, 400), (2.8, 300), (1.0, 350)]]):
        for k, (s, n) in enumerate(rows):
            cid = pid * 10 + k
            cands.append(cand(cid, pid, "y" * n))
            judg.append(judged(cid, s))
    plain, _ = build_pairs(cands, judg)
    assert length_gap(plain) > 250
    alpha = auto_length_penalty(cands, judg)
    assert alpha in PENALTY_GRID and alpha > 0
    balanced, _ = build_pairs(cands, judg, length_penalty=alpha)
    assert abs(length_gap(balanced)) < abs(length_gap(plain)) / 4
    assert min(abs(length_gap(build_pairs(cands, judg, length_penalty=a)[0]) or 1e9) for a in PENALTY_GRID) == \
        abs(length_gap(balanced))
    even = [cand(0, 0, "a" * 100), cand(1, 0, "b" * 100)]
    assert auto_length_penalty(even, [judged(0, 5.0), judged(1, 1.0)]) == 0.0


def test_rho_schedule():
    assert rho_for(None, 3) is None
    assert rho_for(0.4, 1) == rho_for(0.4, 4) == 0.4
    assert [rho_for([0.5, 0.3, 0.0], t) for t in (1, 2, 3, 4)] == [0.5, 0.3, 0.0, 0.0]


def test_ensemble_keeps_only_pairs_both_sources_order_alike():
    cands = [cand(i, pid) for pid in (0, 1) for i in (pid * 10, pid * 10 + 1)]
    judg = [judged(0, 5.0), judged(1, 1.0), judged(10, 4.0), judged(11, 2.0)]
    agree = {0: 0.9, 1: 0.1, 10: 0.2, 11: 0.8}  # the second source agrees on prompt 0, not on prompt 1
    pairs, dropped = build_pairs(cands, judg, agree=agree)
    assert ids(pairs) == [(0, 1)] and dropped == Counter({"sources disagree": 1})
