"""The attention row-group planner (selfreward.backends.row_groups): pure, no torch."""

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from selfreward.backends.row_groups import plan


def cost(groups, width, call_cost):
    return sum(call_cost + (end - first) * (width - column) for first, end, column in groups)


def every_split(n):
    for k in range(n):
        for cuts in combinations(range(1, n), k):
            bounds = (0, *cuts, n)
            yield list(zip(bounds, bounds[1:]))


starts_and_width = st.lists(st.integers(0, 60), min_size=1, max_size=9).flatmap(
    lambda starts: st.tuples(st.just(starts), st.integers(max(starts) + 1, 120)))


@settings(max_examples=200, deadline=None)
@given(starts_and_width, st.integers(0, 400))
def test_the_plan_covers_every_row_in_order_and_costs_least(case, call_cost):
    starts, width = case
    groups = plan(starts, width, call_cost)
    assert [g[0] for g in groups] == [0, *(g[1] for g in groups[:-1])] and groups[-1][1] == len(starts)
    # a group reads from its rows' first used column: no row loses a column it uses
    assert all(column == min(starts[first:end]) for first, end, column in groups)
    least = min(cost([(a, b, min(starts[a:b])) for a, b in split], width, call_cost)
                for split in every_split(len(starts)))
    assert cost(groups, width, call_cost) == least


def test_rows_that_start_together_stay_one_group():
    assert plan([3] * 32, 200) == ((0, 32, 3),)
    assert plan([0, 0, 0], 10, call_cost=0) == ((0, 3, 0),)


def test_a_long_prompt_among_short_ones_gets_its_own_group():
    # the sample workload of `selfreward bench`: 8 prompts x 4 samples, longest first, pads to the left
    starts = [s for s in (0, 57, 65, 65, 88, 90, 90, 95) for _ in range(4)]
    groups = plan(starts, 132)
    assert groups[0] == (0, 4, 0) and len(groups) > 1
    assert cost(groups, 132, 256) < cost(((0, 32, 0),), 132, 256)


def test_calls_that_cost_more_than_the_pads_they_save_are_not_made():
    assert plan([0, 1, 2, 3], 100, call_cost=10_000) == ((0, 4, 0),)
    assert plan([], 50) == ()


def test_a_prefix_is_read_once_for_all_rows_only_where_that_saves_more_than_the_merge():
    from selfreward.backends.row_groups import SHARED_PREFIX_MIN, share_prefix

    assert share_prefix(219, 47)  # the judge's rubric
    assert not share_prefix(30, 32)  # the sample stage's system prompt
    assert share_prefix(SHARED_PREFIX_MIN, 1) and not share_prefix(SHARED_PREFIX_MIN - 1, 1)
