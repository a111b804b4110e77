"""Meta-Rewarding (selfreward.judges.meta and the meta-judge stage's pure parts): ratings of judgments from both
orders of a meta-judge's comparisons, judge-pair selection and share, the collapse guard, the stage chain, the
meta template and the fake backend's meta-judge. No model, no torch."""

from __future__ import annotations

import math
import re

import pytest

from selfreward.backends import Sampling
from selfreward.backends.fake import FakeGenerator
from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.judges import meta, templates
from selfreward.judges.pairwise import OPTIONS
from selfreward.rundir import ITER_STAGES, RunDir, Stage, plan, previous, stage_config
from selfreward.stages import BY_NAME, Context
from selfreward.stages.meta_judge import collapse_guard, judge_pairs_for_dpo

GREEDY = Sampling(1, 0.0, 1.0, 32, 0)
ELO = 400 / math.log(10)  # Elo points per unit of log-odds


def cfg(*overrides):
    return load_config(None, list(overrides))


# --- ratings on hand-made comparisons ------------------------------------------------------------------------------
def test_two_judgments_soft_outcome_is_the_log_odds():
    """P(0 beats 1) = 0.75 -> odds 3 -> 400 log10(3) Elo points apart (a vanishing prior)."""
    r = meta.bradley_terry(2, [(0, 1, 0.75)], prior=1e-7)
    assert r[0] - r[1] == pytest.approx(400 * math.log10(3), abs=1e-3)
    assert meta.win_probability(r[0], r[1]) == pytest.approx(0.75, abs=1e-6)


def test_bradley_terry_recovers_consistent_strengths():
    """Outcomes that are exactly Bradley-Terry probabilities of strengths 4 : 2 : 1 give those strengths back."""
    s = [4, 2, 1]
    outcomes = [(i, j, s[i] / (s[i] + s[j])) for i in range(3) for j in range(i + 1, 3)]
    r = meta.bradley_terry(3, outcomes, prior=1e-7)
    assert r[0] - r[1] == pytest.approx(400 * math.log10(2), abs=1e-3)
    assert r[1] - r[2] == pytest.approx(400 * math.log10(2), abs=1e-3)


def test_hard_verdicts_stay_finite_and_ordered_and_the_prior_centres_them():
    """0 beats 1 and 2, 1 beats 2: every judgment wins or loses everything, which has no finite MLE without the
    virtual draws; with them the ratings are finite, ordered, and symmetric about ELO_BASE."""
    r = meta.bradley_terry(3, [(0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)])
    assert r[0] > r[1] > r[2] and all(math.isfinite(x) for x in r)
    assert r[1] == pytest.approx(meta.ELO_BASE, abs=1e-4)
    assert r[0] - meta.ELO_BASE == pytest.approx(meta.ELO_BASE - r[2], abs=1e-4)


def test_uncompared_and_drawn_judgments_rate_at_base():
    assert meta.bradley_terry(3, []) == [pytest.approx(meta.ELO_BASE)] * 3
    assert meta.bradley_terry(2, [(0, 1, 0.5), (1, 0, 0.5)]) == [pytest.approx(meta.ELO_BASE)] * 2


def test_the_likelihood_is_at_its_maximum():
    """The gradient of the log-likelihood (with the virtual draws) vanishes at the fitted ratings."""
    outcomes = [(0, 1, 0.8), (1, 2, 0.3), (0, 2, 0.55), (2, 3, 0.9), (3, 0, 0.4)]
    r = meta.bradley_terry(4, outcomes)
    grad = [meta.PRIOR_GAMES * (0.5 - meta.win_probability(x, meta.ELO_BASE)) for x in r]
    for i, j, p in outcomes:
        q = meta.win_probability(r[i], r[j])
        grad[i] += p - q
        grad[j] -= p - q
    assert max(abs(g) for g in grad) < 1e-6


@pytest.mark.parametrize("bad", [(0, 0, 0.5), (0, 2, 0.5), (0, 1, 1.5), (0, 1, float("nan"))])
def test_bad_outcomes_are_refused(bad):
    with pytest.raises(ValueError):
        meta.bradley_terry(2, [bad])


# --- both orders, and a position-biased meta-judge ----------------------------------------------------------------
def slot_scores(text: str) -> tuple[int, int]:
    """The "Score: N" of judgment A and of judgment B in a meta-judge prompt."""
    return tuple(int(re.search(rf"<judgment_{s}>.*?Score: (\d)", text, re.S).group(1)) for s in "ab")


class MetaJudge:
    """Forced choice: P(A) = q + bias, where q = P(the judgment in slot A is better) = 0.5 + 0.05 * (its score
    minus the other's), clipped to [0.05, 0.95]. Records its requests."""
    capabilities = frozenset({"generate", "option_probs"})

    def __init__(self, bias: float = 0.0, always_a: bool = False):
        self.bias, self.always_a, self.calls = bias, always_a, []

    def option_probs(self, requests, prefixes, options, desc=""):
        self.calls.append((requests, prefixes, options))
        out = []
        for r in requests:
            a, b = slot_scores(r[0]["content"])
            p = 0.8 if self.always_a else min(max(0.5 + 0.05 * (a - b) + self.bias, 0.05), 0.95)
            out.append([p, 1 - p])
        return out


def answer(scores, prompt_id=0, cid=0, texts=None):
    texts = texts or [f"judgment {j}. Score: {s}" for j, s in enumerate(scores)]
    cand = {"id": cid, "prompt_id": prompt_id, "prompt": f"question {prompt_id}", "response": f"answer {cid}"}
    row = {"candidate_id": cid, "prompt_id": prompt_id, "source": "rubric", "mode": "sample", "raw": texts,
           "scores": list(scores)}
    return cand, row


def rate(judge, scores):
    cand, row = answer(scores)
    answers = meta.disagreeing_answers([cand], [row], None)
    return answers, meta.meta_judge(judge, answers, GREEDY)


def test_each_comparison_is_asked_in_both_orders_and_averaged():
    judge = MetaJudge()
    answers, (row,) = rate(judge, [1, 3])
    ((requests, prefixes, options),) = judge.calls
    assert len(requests) == 2 and prefixes == [meta.META_PREFIX] * 2 and options == OPTIONS
    assert [slot_scores(r[0]["content"]) for r in requests] == [(1, 3), (3, 1)]
    (c,) = row["comparisons"]
    assert (c["ab"]["p_first"], c["ba"]["p_first"]) == (pytest.approx(0.4), pytest.approx(0.6))
    assert c["p_a"] == pytest.approx(0.4)
    assert row["judgments"][1]["rating"] > row["judgments"][0]["rating"]


def test_position_bias_cancels_over_both_orders():
    """A meta-judge that adds 0.2 to slot A everywhere rates the judgments exactly as an unbiased one does; from the
    first order alone the bias would show (judgment 0, always shown first, would climb)."""
    scores = [1, 2, 4, 5]
    _, (fair,) = rate(MetaJudge(), scores)
    _, (biased,) = rate(MetaJudge(bias=0.2), scores)
    assert [j["rating"] for j in biased["judgments"]] == pytest.approx([j["rating"] for j in fair["judgments"]])
    assert [c["p_a"] for c in biased["comparisons"]] == pytest.approx([c["p_a"] for c in fair["comparisons"]])
    one_order = meta.bradley_terry(4, [(c["a"], c["b"], c["ab"]["p_first"]) for c in biased["comparisons"]])
    assert one_order[0] - one_order[1] > 0 > fair["judgments"][0]["rating"] - fair["judgments"][1]["rating"]


def test_a_meta_judge_that_always_answers_a_prefers_nothing_and_builds_no_judge_pair():
    answers, rated = rate(MetaJudge(always_a=True), [1, 2, 4])
    assert {round(j["rating"], 6) for j in rated[0]["judgments"]} == {meta.ELO_BASE}
    pairs, dropped = meta.judge_pair_rows(answers, rated, templates.load("rubric"), limit=1)
    assert pairs == [] and dropped == {"ratings tie": 1}


def test_generated_verdicts_from_an_api_judge_are_parsed_and_kept():
    class Writer:
        capabilities = frozenset({"generate"})

        def generate(self, requests, sampling, desc=""):
            return [[f"Judgment {'A' if a > b else 'B'} is right. [[{'A' if a > b else 'B'}]]"]
                    for a, b in (slot_scores(r[0]["content"]) for r in requests)]

    _, (row,) = rate(Writer(), [2, 5])
    (c,) = row["comparisons"]
    assert (c["ab"]["verdict"], c["ba"]["verdict"], c["p_a"]) == ("B", "A", 0.0)
    assert c["ab"]["raw"].endswith("[[B]]")
    assert row["judgments"][1]["rating"] > row["judgments"][0]["rating"]


def test_unread_comparisons_are_counted_and_left_out():
    class Silent(MetaJudge):
        def option_probs(self, requests, prefixes, options, desc=""):
            return [[0.01, 0.01] for _ in requests]

    _, (row,) = rate(Silent(), [1, 4])
    assert row["unread"] == 1 and row["comparisons"][0]["p_a"] is None
    assert [j["rating"] for j in row["judgments"]] == [pytest.approx(meta.ELO_BASE)] * 2


# --- which answers are meta-judged ---------------------------------------------------------------------------------
def test_only_answers_whose_valid_judgments_disagree_most_spread_first():
    rows = [answer([3, 3, 3], cid=0), answer([3, None, 4], cid=1), answer([1, 5, 3], cid=2),
            answer([2, 4, 3], cid=3), answer([4, 4, None], cid=4), answer([0, 5, 5], cid=5, prompt_id=1)]
    cands, judged = [c for c, _ in rows], [r for _, r in rows]
    judged[5] = {**judged[5], "cut_off": True}
    picked = meta.disagreeing_answers(cands, judged, per_prompt=2)
    assert [a["candidate"]["id"] for a in picked] == [2, 3]  # spread 1.63 and 0.82 beat 0.5; 0 and 4 agree
    assert [a["candidate"]["id"] for a in meta.disagreeing_answers(cands, judged, per_prompt=1)] == [2]
    every = meta.disagreeing_answers(cands, judged, per_prompt=None)
    assert [a["candidate"]["id"] for a in every] == [1, 2, 3]
    assert [j["index"] for j in every[0]["judgments"]] == [0, 2]  # the unparsed judgment is left out


# --- judge-pair selection ------------------------------------------------------------------------------------------
def rated(*triples):
    return [{"score": s, "rating": r, "chars": c} for s, r, c in triples]


def test_best_against_worst_then_inwards_up_to_the_limit():
    js = rated((3, 1000, 10), (5, 1200, 10), (1, 800, 10), (2, 1100, 10), (4, 900, 10))
    assert meta.select_judge_pairs(js, limit=1) == ([(1, 2)], {})
    assert meta.select_judge_pairs(js, limit=2) == ([(1, 2), (3, 4)], {})
    assert meta.select_judge_pairs(js, limit=5) == ([(1, 2), (3, 4)], {})  # the middle one has no partner


def test_ties_are_dropped():
    same_score = rated((4, 1200, 10), (4, 800, 10))
    assert meta.select_judge_pairs(same_score, 1) == ([], {"same score": 1})
    same_rating = rated((5, 1000, 10), (1, 1000, 10))
    assert meta.select_judge_pairs(same_rating, 1) == ([], {"ratings tie": 1})
    # the limit counts the pairs considered: a tie at the outside is not replaced by an inner pair
    js = rated((4, 1200, 10), (5, 1100, 10), (1, 900, 10), (4, 800, 10))
    assert meta.select_judge_pairs(js, 1) == ([], {"same score": 1})
    assert meta.select_judge_pairs(js, 2) == ([(1, 2)], {"same score": 1})


def test_a_long_chosen_judgment_is_dropped():
    js = rated((5, 1200, 900), (1, 800, 10))
    assert meta.select_judge_pairs(js, 1, max_chars=500) == ([], {"chosen judgment too long": 1})
    assert meta.select_judge_pairs(js, 1, max_chars=900) == ([(0, 1)], {})


def test_judge_pair_rows_prompt_is_the_rubric_prompt_and_texts_are_judgments():
    answers, rows = rate(MetaJudge(), [1, 3, 5])
    template = templates.load("rubric")
    (pair,), dropped = meta.judge_pair_rows(answers, rows, template, limit=1)
    assert pair["prompt"] == templates.render(template, {"instruction": "question 0", "response": "answer 0"})
    assert (pair["chosen"], pair["rejected"]) == ("judgment 2. Score: 5", "judgment 0. Score: 1")
    assert (pair["chosen_index"], pair["rejected_index"], pair["chosen_score"], pair["rejected_score"]) == (2, 0, 5, 1)
    assert pair["chosen_rating"] > pair["rejected_rating"] and not dropped


# --- the share of judge pairs in DPO --------------------------------------------------------------------------------
@pytest.mark.parametrize("actor, available, share, n", [
    (17, 10, 0.15, 3),   # 3 / 20 = 0.15 exactly
    (16, 10, 0.15, 2),   # 3 / 19 would be 0.158
    (100, 5, 0.15, 5),   # no more than there are
    (10, 10, 0.0, 0), (0, 10, 0.15, 0), (3, 10, 0.5, 3),
])
def test_judge_pair_count(actor, available, share, n):
    assert meta.judge_pair_count(actor, available, share) == n
    assert n == 0 or n / (actor + n) <= share + 1e-12


def test_the_judge_pair_sample_is_seeded_and_keeps_order():
    rows = [{"i": i} for i in range(20)]
    a, b = meta.sample_rows(rows, 5, seed=3), meta.sample_rows(rows, 5, seed=3)
    assert a == b and len(a) == 5 and [r["i"] for r in a] == sorted(r["i"] for r in a)
    assert meta.sample_rows(rows, 5, seed=4) != a
    assert meta.sample_rows(rows, 0, seed=3) == []


def test_share_per_iteration_and_its_validation():
    c = cfg("meta.judge_pair_share=[0.15, 0.1, 0]")
    from selfreward.pairs import rho_for

    assert [rho_for(c.meta.judge_pair_share, t) for t in (1, 2, 3, 4)] == [0.15, 0.1, 0.0, 0.0]
    for bad in ("1", "-0.1", "[0.2, 1.0]", "[]"):
        with pytest.raises(UserError, match="'meta.judge_pair_share' must be a number in"):
            cfg(f"meta.judge_pair_share={bad}")


def test_meta_needs_sampled_rubric_judgments():
    with pytest.raises(UserError, match="set judge.mode=sample and judge.k=2 or more"):
        cfg("meta.enabled=true", "judge.k=1")
    with pytest.raises(UserError, match="set reward.source=rubric"):
        cfg("meta.enabled=true", "reward.source=pairwise")
    assert cfg("meta.enabled=true").meta.enabled


# --- the collapse guard --------------------------------------------------------------------------------------------
def test_score_distribution_and_entropy():
    d = meta.score_distribution([5, 5, 5, 4.5, 3])  # 4.5 rounds half up to 5
    assert d == {"valid_scores": 5, "score_shares": {"3": 0.2, "5": 0.8}, "top_score": 5, "top_score_share": 0.8,
                 "score_entropy": pytest.approx(-(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8)), abs=1e-4)}
    assert meta.score_distribution(list(range(6)))["score_entropy"] == pytest.approx(math.log2(6), abs=1e-4)
    assert meta.score_distribution([4, 4])["score_entropy"] == 0
    assert meta.score_distribution([2, 4])["top_score"] == 4  # ties go to the higher score
    assert meta.score_distribution([])["top_score_share"] is None


def test_collapse_is_more_than_the_share():
    assert meta.collapse_message(meta.score_distribution([5] * 4 + [3]), 0.8) is None  # 80% is not more than 80%
    msg = meta.collapse_message(meta.score_distribution([5] * 9 + [3]), 0.8)
    assert msg.startswith("judge collapse: score 5 is 90.0% of the 10 valid judge scores") and "\n" not in msg


def test_rubric_scores_of_each_mode_and_source():
    rows = [{"source": "rubric", "mode": "sample", "scores": [5, None, 4], "score": 4.5},
            {"source": "rubric", "mode": "expected", "scores": [3], "score": 4.2},
            {"source": "implicit", "score": -1.3}, {"score": None, "cut_off": True},
            {"source": "ensemble", "score": 2.0, "sources": {"rubric": {"mode": "sample", "scores": [2, 2]}}}]
    assert meta.rubric_scores(rows) == [5, 4, 4.2, 2, 2]


def judge_ctx(tmp_path, *overrides):
    return Context(RunDir(tmp_path), cfg(*overrides), 2, "judge")


def test_guard_adds_the_distribution_and_warns_plainly(tmp_path, capsys):
    rows = [{"source": "rubric", "mode": "sample", "scores": [5, 5, 5], "score": 5.0}] * 3
    stats = collapse_guard(judge_ctx(tmp_path), rows, {"mean_score": 5.0})
    assert stats["mean_score"] == 5.0 and stats["top_score"] == 5 and stats["score_entropy"] == 0
    assert stats["collapse"].startswith("judge collapse: score 5 is 100.0%")
    assert capsys.readouterr().out.startswith("[warn] iteration 2: judge collapse: score 5 is 100.0%")
    calm = collapse_guard(judge_ctx(tmp_path), [{"mode": "sample", "scores": [1, 3, 5], "score": 3.0}], {})
    assert "collapse" not in calm and calm["valid_scores"] == 3


def test_guard_stops_with_one_line_when_told(tmp_path):
    rows = [{"source": "rubric", "mode": "sample", "scores": [4] * 9 + [3], "score": 3.9}]
    with pytest.raises(UserError) as e:
        collapse_guard(judge_ctx(tmp_path, "meta.stop_on_collapse=true"), rows, {})
    assert "\n" not in str(e.value) and str(e.value).startswith("iteration 2: judge collapse: score 4 is 90.0%")
    assert "stopped (meta.stop_on_collapse)" in str(e.value) and "meta.stop_on_collapse=false" in str(e.value)
    assert collapse_guard(judge_ctx(tmp_path, "meta.stop_on_collapse=true", "meta.collapse_share=0.9"), rows, {})


# --- the stage chain ----------------------------------------------------------------------------------------------
def test_meta_judge_sits_between_judge_and_pairs_only_when_enabled():
    names = [s.name for s in plan(1, meta=True)]
    assert names == ["sft", "gen-prompts", "sample", "judge", "meta-judge", "pairs", "dpo"]
    assert "meta-judge" not in [s.name for s in plan(3)]
    assert plan(2, judge_eval=True) == [s for s in plan(2, judge_eval=True, meta=True) if s.name != "meta-judge"]
    assert previous(Stage("pairs", 2), meta=True) == Stage("meta-judge", 2)
    assert previous(Stage("pairs", 2)) == Stage("judge", 2)
    assert previous(Stage("meta-judge", 2)) == previous(Stage("meta-judge", 2), meta=True) == Stage("judge", 2)
    assert ITER_STAGES.index("judge") < ITER_STAGES.index("meta-judge") < ITER_STAGES.index("pairs")


def test_run_plan_follows_meta_enabled():
    from selfreward.pipeline import run_plan

    assert Stage("meta-judge", 2) in run_plan(cfg("meta.enabled=true"))
    assert not any(s.name == "meta-judge" for s in run_plan(cfg()))


def test_no_stage_but_meta_judge_records_a_meta_setting():
    """With meta off, every other stage's done-marker records what it did before: an existing run stays done."""
    c = cfg()
    for name, spec in BY_NAME.items():
        keys = [k for k in stage_config(c, spec.deps) if k.startswith("meta.")]
        assert (keys != []) == (name == "meta-judge"), name
    assert "meta.collapse_share" not in stage_config(c, BY_NAME["meta-judge"].deps)


def mark(rd, stage, c, prev):
    rd.mark_done(stage, stage_config(c, BY_NAME[stage.name].deps), prev, {})


def test_dpo_takes_judge_pairs_only_after_this_iterations_meta_judge(tmp_path):
    rd, on = RunDir(tmp_path), cfg("meta.enabled=true", "meta.judge_pair_share=[0.2, 0.1]")
    rd.artifact(2, "x").parent.mkdir(parents=True)
    rd.artifact(2, "judge_pairs.jsonl").write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n')
    assert judge_pairs_for_dpo(rd, 2) is None  # nothing done yet
    mark(rd, Stage("judge", 2), on, None)
    mark(rd, Stage("meta-judge", 2), on, Stage("judge", 2))
    mark(rd, Stage("pairs", 2), on, Stage("meta-judge", 2))
    rows, share = judge_pairs_for_dpo(rd, 2)
    assert rows == [{"prompt": "p", "chosen": "c", "rejected": "r"}] and share == 0.1  # iteration 2's share
    mark(rd, Stage("pairs", 2), cfg(), Stage("judge", 2))  # meta switched off: pairs rebuilt after judge
    assert judge_pairs_for_dpo(rd, 2) is None


# --- template and fake backend -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["meta", "meta_choice"])
def test_meta_templates_hold_every_placeholder(kind):
    text = templates.load(kind)
    assert all("{" + p + "}" in text for p in templates.PLACEHOLDERS[kind])
    assert ("[[A]]" in text) == (kind == "meta")


def test_a_custom_meta_template_is_checked_under_its_own_key(tmp_path):
    path = tmp_path / "meta.txt"
    path.write_text("{instruction} {response} {judgment_a}")
    with pytest.raises(UserError, match=r"lacks the placeholder\(s\) \{judgment_b\} \(meta.template\)"):
        templates.load("meta", str(path), "meta.template")


def test_fake_meta_judge_prefers_the_lower_score_with_a_first_slot_bias():
    fake = FakeGenerator("m")
    choice = templates.load("meta_choice")

    def request(a, b):
        return [{"role": "user", "content": templates.render(choice, {
            "instruction": "q", "response": "r", "judgment_a": f"Score: {a}", "judgment_b": f"Score: {b}"})}]

    assert fake.option_probs([request(1, 4), request(4, 1), request(2, 2)], [meta.META_PREFIX] * 3, OPTIONS) == \
        [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]
    verdict = templates.load("meta")
    texts = fake.generate([[{"role": "user", "content": templates.render(verdict, {
        "instruction": "q", "response": "r", "judgment_a": "Score: 5", "judgment_b": "Score: 2"})}]], GREEDY)
    assert texts[0][0].endswith("[[B]]")


# --- the stage on the fake backend (no model) ------------------------------------------------------------------
def stage_dir(tmp_path, t=1, scores=((1, 3, 5), (2, 2, 2), (0, 4, None))):
    from selfreward.records import write_jsonl

    rd = RunDir(tmp_path)
    rows = [answer(s, prompt_id=i, cid=i) for i, s in enumerate(scores)]
    write_jsonl(rd.artifact(t, "candidates.jsonl"), [c for c, _ in rows])
    write_jsonl(rd.artifact(t, "judgments.jsonl"), [r for _, r in rows])
    return rd


def test_stage_writes_ratings_and_judge_pairs(tmp_path):
    from selfreward.records import read_jsonl

    rd = stage_dir(tmp_path)
    c = cfg("meta.enabled=true", "judge.backend=fake")
    stats = BY_NAME["meta-judge"].run(Context(rd, c, 1, "meta-judge"))
    assert stats["meta_answers"] == 2 and stats["meta_comparisons"] == 3 + 1 and stats["meta_unread"] == 0
    assert stats["meta_verdict"] == "forced choice" and stats["judge_pairs_built"] == 2 and stats["skipped"] is None
    rated = read_jsonl(rd.artifact(1, "meta_judgments.jsonl"))
    assert [r["candidate_id"] for r in rated] == [0, 2]  # answer 1's judgments agree
    pairs = read_jsonl(rd.artifact(1, "judge_pairs.jsonl"))
    # the fake meta-judge prefers the lower score: chosen is the lowest-scoring judgment
    assert [(p["chosen_score"], p["rejected_score"]) for p in pairs] == [(1, 5), (0, 4)]


def test_stage_skips_an_iteration_whose_share_is_zero(tmp_path):
    from selfreward.records import read_jsonl

    rd = stage_dir(tmp_path, t=2)

    def no_model(*args, **kwargs):
        raise AssertionError("no generator is opened in an iteration without meta-judging")

    c = cfg("meta.enabled=true", "meta.judge_pair_share=[0.15, 0]")
    stats = BY_NAME["meta-judge"].run(Context(rd, c, 2, "meta-judge", opener=no_model))
    assert stats["skipped"] == "meta.judge_pair_share is 0 in iteration 2" and stats["judge_pairs_built"] == 0
    assert read_jsonl(rd.artifact(2, "judge_pairs.jsonl")) == read_jsonl(rd.artifact(2, "meta_judgments.jsonl")) == []
