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
