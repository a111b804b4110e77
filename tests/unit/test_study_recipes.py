"""Every shipped recipe with study.variants can run as a study: each variant parses and shares the stages a study
shares (the check `selfreward study` makes before anything runs)."""

import pytest

from selfreward.commands.run import recipe_path
from selfreward.commands.study import _check_shares, variants
from selfreward.config import load_config


@pytest.mark.parametrize("recipe", ["cpu-study", "meta-rewarding-cpu"])
def test_shipped_study_variants_share_what_a_study_shares(recipe):
    base = load_config(recipe_path(recipe), [])
    plan = variants(base, None)
    assert len(plan) >= 2
    for name, extra in plan.items():
        _check_shares(name, base, load_config(recipe_path(recipe), extra))


def test_meta_rewarding_study_compares_meta_judging_with_plain_self_rewarding():
    base = load_config(recipe_path("meta-rewarding-cpu"), [])
    plan = variants(base, None)
    enabled = {name: load_config(recipe_path("meta-rewarding-cpu"), extra).meta.enabled for name, extra in plan.items()}
    assert enabled == {"meta-rewarding": True, "self-rewarding": False}
