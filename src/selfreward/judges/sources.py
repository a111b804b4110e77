"""Reward sources: what scores the candidates of an iteration (reward.source). Pure over their generators.

Each returns one row per candidate, in order, with "source", "score" (None when unscored) and the raw evidence
the score was computed from, so every number can be audited and recomputed:

rubric    the paper's judge (judge.mode sample | expected; see selfreward.judges.rubric): raw judgments, parsed
          scores, digit probabilities in expected mode.
pairwise  every two candidates of a prompt compared by forced choice, both orders (selfreward.judges.pairwise):
          "comparisons": [{"vs", "p_win", "ab", "ba"}]; score = the candidate's mean probability of beating the
          others it was compared with (None when no comparison was read). A judge that always prefers one slot
          gives every candidate 0.5.
implicit  the DPO implicit reward beta * (log pi_t(y|x) - log pi_ref(y|x)) summed over the response's tokens
          (divided by their count when length-normalised): "logp", "logp_ref", "tokens". pi_ref is the model
          pi_t was trained from.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

from selfreward.backends import Generator, LogProb, Sampling
from selfreward.config import JudgeConfig
from selfreward.judges.pairwise import both_orders
from selfreward.judges.scorers import score_items


def rubric(gen: Generator, template: str, candidates: list[dict], c: JudgeConfig, seed: int,
           desc: str = "judge") -> list[dict]:
    rows = score_items(gen, template, [(x["prompt"], x["response"]) for x in candidates], c, seed, desc=desc)
    return [{"source": "rubric", **row} for row in rows]


def pairwise(gen: Generator, candidates: list[dict], sampling: Sampling, desc: str = "pairwise") -> list[dict]:
    by_prompt = defaultdict(list)
    for i, x in enumerate(candidates):
        by_prompt[x["prompt_id"]].append(i)
    matches = [(i, j) for idx in by_prompt.values() for i, j in combinations(idx, 2)]
    results = both_orders(gen, [(candidates[i]["prompt"], candidates[i]["response"], candidates[j]["response"])
                                for i, j in matches], sampling, desc=desc) if matches else []
    comparisons: list[list[dict]] = [[] for _ in candidates]
    for (i, j), r in zip(matches, results):
        p = r["p_a"]
        comparisons[i].append({"vs": candidates[j]["id"], "p_win": p, "ab": r["ab"], "ba": r["ba"]})
        comparisons[j].append({"vs": candidates[i]["id"], "p_win": None if p is None else 1 - p,
                               "ab": r["ba"], "ba": r["ab"]})
    rows = []
    for comps in comparisons:
        read = [c["p_win"] for c in comps if c["p_win"] is not None]
        rows.append({"source": "pairwise", "score": sum(read) / len(read) if read else None, "comparisons": comps})
    return rows


def implicit(policy: list[LogProb], reference: list[LogProb], beta: float, length_normalized: bool) -> list[dict]:
    """Rows from the log-probabilities of the same responses under pi_t (`policy`) and pi_ref (`reference`)."""
    rows = []
    for lp, ref in zip(policy, reference, strict=True):
        ratio = lp.total - ref.total
        score = beta * (ratio / max(lp.tokens, 1) if length_normalized else ratio)
        rows.append({"source": "implicit", "score": score, "logp": lp.total, "logp_ref": ref.total,
                     "tokens": lp.tokens, "beta": beta, "length_normalized": length_normalized})
    return rows


def logprob_requests(candidates: list[dict]) -> tuple[list[list[dict]], list[str]]:
    """(the prompts as chat requests, the responses): what a backend's logprobs() reads."""
    return [[{"role": "user", "content": x["prompt"]}] for x in candidates], [x["response"] for x in candidates]


# --- running a reward over candidates: generators opened one at a time through `open_gen` --------------------------

def run_reward(cfg, candidates: list[dict], open_gen, judge: str, judge_role: str, policy: str,
               reference: str | None, seed: int, desc: str) -> list[dict]:
    """One row per candidate from cfg.reward.source (an ensemble: {"source": "ensemble", "score": the first
    source's, "sources": {name: row}}). open_gen(cfg, model_path, role=, needs=, purpose=) opens a backend;
    `judge` is the model that judges (rubric, pairwise), `policy` and `reference` the pi_t and pi_ref of the
    implicit reward (reference None: there is none, e.g. for the base model, and the implicit reward is refused)."""
    r = cfg.reward
    names = r.ensemble if r.source == "ensemble" else [r.source]
    scored = {}
    for name in names:
        if name == "implicit":
            scored[name] = _implicit(cfg, candidates, open_gen, policy, reference, desc)
        else:
            scored[name] = _judged(name, cfg, candidates, open_gen, judge, judge_role, seed, desc)
    if r.source != "ensemble":
        return scored[names[0]]
    return [{"source": "ensemble", "score": parts[0]["score"], "sources": dict(zip(names, parts))}
            for parts in zip(*(scored[n] for n in names))]


def _judged(name: str, cfg, candidates: list[dict], open_gen, judge: str, role: str, seed: int,
            desc: str) -> list[dict]:
    from selfreward.backends import AUTO, CAPABILITIES, GENERATE, OPTION_PROBS, role_backend
    from selfreward.judges import templates
    from selfreward.judges.scorers import needs

    c = cfg.judge
    if name == "rubric":
        wants = needs(c)
    else:  # forced choice where the judge's backend gives probabilities; a server's judge writes verdicts instead
        backend = role_backend(cfg, role)[0]
        can = backend == AUTO or OPTION_PROBS in CAPABILITIES[backend]
        wants = frozenset({GENERATE, OPTION_PROBS} if can else {GENERATE})
    gen = open_gen(cfg, judge, role=role, needs=wants, purpose=f"reward.source={name}")
    try:
        if name == "rubric":
            return rubric(gen, templates.load("rubric", c.template), candidates, c, seed, desc=desc)
        return pairwise(gen, candidates, Sampling(1, 0.0, 1.0, c.max_new_tokens, seed),
                        desc=f"{desc} (pairwise, both orders)")
    finally:
        gen.close()


def _implicit(cfg, candidates: list[dict], open_gen, policy: str, reference: str | None, desc: str) -> list[dict]:
    from selfreward.backends import LOGPROBS
    from selfreward.errors import UserError

    if reference is None:
        raise UserError(f"reward.source=implicit needs the model {policy} was trained from (its reference); "
                        "there is none for the base model")
    requests, responses = logprob_requests(candidates)
    got = {}
    for role_name, path in (("policy", policy), ("reference", reference)):
        gen = open_gen(cfg, path, role="policy", needs=frozenset({LOGPROBS}), purpose="reward.source=implicit")
        try:
            got[role_name] = gen.logprobs(requests, responses, desc=f"{desc} (implicit: {role_name} log-probs)")
        finally:
            gen.close()
    return implicit(got["policy"], got["reference"], cfg.reward.beta, cfg.reward.length_normalized)
