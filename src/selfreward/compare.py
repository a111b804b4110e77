"""Head-to-head evaluation: two models answer the same prompts; a pairwise judge decides every pair in both orders.

Two ways to read a verdict (eval.judge_mode; auto picks the first where the judge's backend allows it):
- forced choice: after the pairwise_choice prompt and "Better response:", the judge's next-token probabilities of
  "A" and "B" give P(first is better) = P(A) / (P(A) + P(B)); asked with A first and with B first, the two are
  averaged into p_a = P(A is better), so a preference for a slot cancels (selfreward.judges.pairwise.both_orders).
  A win needs p_a > 0.5 + margin, a loss p_a < 0.5 - margin; anything between is a tie. When the judge puts less
  than MIN_OPTION_MASS on the two letters in either order p_a is unreadable (None): a tie, counted apart.
- generated verdicts (judges without probabilities, API servers): the judge writes its reasoning and a verdict,
  [[A]], [[B]] or [[tie]], the last marker of its own output. A pair is a win for A only when both orders prefer
  A, a loss only when both prefer B; everything else, including a verdict that cannot be parsed, is a tie, so a
  judge that always picks the first (or second) slot yields ties, never wins. The raw judge texts are kept.
Either way the verdicts by slot are counted, and the position bias: per order, the share of prompts whose
verdict went to the first slot (a judge without one has about 0.5 over both orders together).

Intervals: a percentile bootstrap over prompts. The n outcomes are resampled with replacement `draws` times (a
seeded random.Random); each rate's interval runs from the 2.5th to the 97.5th percentile of its resampled values
(statistics.quantiles, inclusive method).

Judge check: the judge's accuracy on human-labelled pairs (LLMBar Natural, shipped), decided the same way in both
orders, beside the length heuristic on the same pairs, so a head-to-head's verdicts can be weighed.
"""

from __future__ import annotations

import dataclasses
import random
import statistics

from selfreward.backends import GENERATE, OPTION_PROBS, Generator, Sampling, open_generator, role_backend
from selfreward.errors import UserError
from selfreward.judges.pairwise import both_orders, pairwise_verdicts

FORCED, GENERATED = "forced choice", "generated verdicts"
OUTCOMES = ("win", "tie", "loss")


def tally(outcomes: list[str], seed: int = 0, draws: int = 2000) -> dict:
    """Counts and rates of win/tie/loss with percentile-bootstrap 95% intervals (see the module docstring)."""
    unknown = set(outcomes) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcomes {sorted(unknown)}")
    if draws < 2:
        raise ValueError("draws must be at least 2")
    n = len(outcomes)
    counts = {o: outcomes.count(o) for o in OUTCOMES}
    result = {"n": n, "wins": counts["win"], "ties": counts["tie"], "losses": counts["loss"]}
    if n == 0:
        return {**result, "win_rate": None, "tie_rate": None, "loss_rate": None, "ci": None}
    rng = random.Random(seed)
    resampled = {o: [] for o in OUTCOMES}
    for _ in range(draws):
        sample = rng.choices(outcomes, k=n)
        for o in OUTCOMES:
            resampled[o].append(sample.count(o) / n)
    ci = {}
    for o, key in zip(OUTCOMES, ("win_rate", "tie_rate", "loss_rate")):
        cuts = statistics.quantiles(resampled[o], n=40, method="inclusive")  # cuts[0] = 2.5%, cuts[-1] = 97.5%
        result[key] = round(counts[o] / n, 4)
        ci[key] = [round(cuts[0], 4), round(cuts[-1], 4)]
    return {**result, "ci": ci}


def decide(p_a: float | None, margin: float) -> str:
    """A's outcome from the averaged P(A is better) of both orders: win above 0.5 + margin, loss below 0.5 -
    margin, else (also when unreadable) a tie."""
    if p_a is None:
        return "tie"
    return "win" if p_a > 0.5 + margin else "loss" if p_a < 0.5 - margin else "tie"


def judge_needs(backend: str, mode: str) -> frozenset[str]:
    """What the judge's backend must give: next-token probabilities for forced choice (auto asks for them from any
    backend that can have them, so auto picks transformers over vLLM), else completions."""
    if mode == "forced" or mode == "auto" and backend not in ("openai", "vllm"):
        return frozenset({OPTION_PROBS})
    return frozenset({GENERATE})


def forced(gen: Generator, mode: str) -> bool:
    if mode == "forced" and OPTION_PROBS not in gen.capabilities:
        raise UserError("eval.judge_mode=forced needs next-token probabilities, which this judge's backend does not "
                        "give; use eval.judge_mode=auto (generated verdicts there) or the transformers backend")
    return mode != "generated" and OPTION_PROBS in gen.capabilities


def judge_pairs(gen: Generator, instructions: list[str], answers_a: list[str], answers_b: list[str],
                sampling: Sampling, margin: float, mode: str = "auto", desc: str = "") -> tuple[str, list[dict]]:
    """(method, one row per prompt): forced choice or generated verdicts (see the module docstring), both orders
    of every pair in one call. Forced-choice rows keep the evidence: each order's P(first is better) (p_ab: A
    first, p_ba: B first) and its raw probabilities of "A" and "B"."""
    if not forced(gen, mode):
        return GENERATED, pairwise_verdicts(gen, instructions, answers_a, answers_b, sampling, desc=desc)
    triples = list(zip(instructions, answers_a, answers_b))
    rows = []
    for (q, a, b), ev in zip(triples, both_orders(gen, triples, sampling, desc=desc or "compare: judge")):
        rows.append({"instruction": q, "answer_a": a, "answer_b": b, "p_a": ev["p_a"],
                     "p_ab": ev["ab"]["p_first"], "p_ba": ev["ba"]["p_first"],
                     "option_probs_ab": ev["ab"]["option_probs"], "option_probs_ba": ev["ba"]["option_probs"],
                     "outcome": decide(ev["p_a"], margin)})
    return FORCED, rows


def summarize(rows: list[dict], seed: int = 0, method: str = GENERATED, margin: float | None = None) -> dict:
    """tally() of the rows' outcomes, with how they were read: the method (and margin), the mean P(A is better)
    (forced choice), the verdicts per slot, the position bias, the unreadable prompts (counted as ties), the
    unparseable verdicts and the mean answer length of each side in characters."""
    if method == FORCED:
        ab, ba = [_slot(r["p_ab"]) for r in rows], [_slot(r["p_ba"]) for r in rows]
        readable = [r["p_a"] for r in rows if r["p_a"] is not None]
        unreadable = len(rows) - len(readable)
        mean_p_a = round(statistics.fmean(readable), 4) if readable else None
    else:
        ab, ba = [r["verdict_ab"] for r in rows], [r["verdict_ba"] for r in rows]
        unreadable = sum(x is None or y is None for x, y in zip(ab, ba))
        mean_p_a = None
    verdicts = ab + ba
    return {
        **tally([r["outcome"] for r in rows], seed),
        "method": method, "margin": margin if method == FORCED else None, "mean_p_a": mean_p_a,
        "position_bias": {"ab": _first_share(ab), "ba": _first_share(ba)},
        "unreadable": unreadable,
        "parse_failures": verdicts.count(None),
        "verdicts": {"first": verdicts.count("A"), "second": verdicts.count("B"), "tie": verdicts.count("tie"),
                     "unparsed": verdicts.count(None)},
        "mean_len_a": mean_len([r["answer_a"] for r in rows]),
        "mean_len_b": mean_len([r["answer_b"] for r in rows]),
    }


def _slot(p_first: float | None) -> str | None:
    """A forced choice as a verdict in slot terms."""
    return None if p_first is None else "A" if p_first > 0.5 else "B" if p_first < 0.5 else "tie"


def _first_share(verdicts: list[str | None]) -> float | None:
    """The share of the read verdicts of one order that went to the first slot."""
    read = [v for v in verdicts if v is not None]
    return round(read.count("A") / len(read), 4) if read else None


def mean_len(texts: list[str]) -> float | None:
    return round(statistics.fmean(len(t) for t in texts), 1) if texts else None


def wtl(result: dict) -> str:
    """W/T/L, with the mean P(A is better) of a forced choice: the cell of a summary table."""
    cell = f"{result['wins']}/{result['ties']}/{result['losses']}"
    return cell if result.get("mean_p_a") is None else f"{cell} p={result['mean_p_a']:.2f}"


def table(title: str, result: dict) -> str:
    """A one-screen report of summarize()'s result."""
    lines = [title, f"{'':10s}{'count':>7s}{'share':>9s}   95% CI"]
    for label, count, key in (("A wins", "wins", "win_rate"), ("ties", "ties", "tie_rate"),
                              ("A loses", "losses", "loss_rate")):
        rate, ci = result[key], (result["ci"] or {}).get(key)
        share = "-" if rate is None else f"{100 * rate:.1f}%"
        interval = "" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
        lines.append(f"{label:10s}{result[count]:>7d}{share:>9s}   {interval}")
    v, n = result["verdicts"], result["n"]
    if result.get("method") == FORCED:
        mean = "-" if result["mean_p_a"] is None else f"{result['mean_p_a']:.3f}"
        lines.append(f"forced choice: mean P(A better) {mean}; a win needs > {0.5 + result['margin']:.2f}, a loss "
                     f"< {0.5 - result['margin']:.2f}; unreadable {result['unreadable']} of {n} (too little "
                     "probability on A and B; counted as ties)")
    else:
        lines.append(f"verdicts by slot: first {v['first']}, second {v['second']}, tie {v['tie']}, "
                     f"unparseable {v['unparsed']} (counted as ties) of {2 * n}")
    bias = result.get("position_bias") or {}
    if bias.get("ab") is not None or bias.get("ba") is not None:
        lines.append(f"first slot preferred: {_pct(bias.get('ab'))} with A first, {_pct(bias.get('ba'))} with B "
                     "first (without position bias these average 50%)")
    lines.append(f"mean answer length (chars): A {result['mean_len_a']}, B {result['mean_len_b']}")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def resolve_judge(spec: str) -> tuple[str, str]:
    """('a' | 'b' | 'openai' | 'local', name): which model judges, from --judge."""
    if spec in ("a", "b"):
        return spec, spec
    if spec.startswith("openai:"):
        name = spec.removeprefix("openai:")
        if not name:
            raise UserError("--judge openai:MODEL needs the model name the server serves, e.g. openai:gpt-4o")
        return "openai", name
    return "local", spec


def eval_judge(cfg) -> str | None:
    """The judge of the evaluations as a --judge spec: eval.judge, else judge.model (openai:NAME when the training
    judge is served), else None: the caller's own default (the older model of a head-to-head, the model itself
    for the suites)."""
    if cfg.eval.judge:
        return cfg.eval.judge
    if cfg.judge.model:
        return f"openai:{cfg.judge.model}" if cfg.judge.backend == "openai" else cfg.judge.model
    return None


def judge_target(cfg, spec: str, given: str = "--judge") -> tuple:
    """(the config to open the judge with, what to open) for a named judge: a model (id, directory, .gguf file),
    or openai:NAME, reached through judge.base_url and judge.api_key_env (or generation.*). `given`: where the
    spec came from, for the message."""
    kind, name = resolve_judge(spec)
    if kind == "openai":
        if not (cfg.judge.base_url or cfg.generation.base_url):
            raise UserError(f"{given} {spec} needs the server's address: add the override judge.base_url=URL "
                            "(e.g. https://api.openai.com/v1)")
        return dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, backend="openai")), name
    if kind != "local":
        raise UserError(f"{given} {spec} names a side of a head-to-head; name a model here")
    if cfg.judge.backend == "openai":  # a local evaluation judge beside a served training judge
        cfg = dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, backend=None))
    return cfg, model_path(cfg, name, role="judge")


def open_judge(opener, cfg, path: str, purpose: str) -> Generator:
    """The evaluation judge's backend, asked for what eval.judge_mode needs (see judge_needs)."""
    needs = judge_needs(role_backend(cfg, "judge")[0], cfg.eval.judge_mode)
    return opener(cfg, path, role="judge", needs=needs, purpose=purpose)


# --- judge check: the judge on human-labelled pairs, beside the length heuristic ----------------------------------

CHECK_SET = "builtin:llmbar-natural"
CHECK_SOURCE = "LLMBar Natural (princeton-nlp/LLMBar, MIT): 100 pairs, the better output labelled by its authors"


class _GenerateOnly:
    """A judge seen without its next-token probabilities: both_orders then reads generated verdicts."""

    capabilities = frozenset({GENERATE})

    def __init__(self, gen: Generator):
        self._gen = gen

    def generate(self, requests, sampling, desc=""):
        return self._gen.generate(requests, sampling, desc=desc)


def judge_check(gen: Generator, pairs: int, mode: str, sampling: Sampling, seed: int,
                desc: str = "judge check") -> tuple[dict, list[dict]]:
    """(result, one row per pair): the judge decides `pairs` LLMBar Natural pairs (a fixed seeded subset; all 100
    at 100 or more) in both orders, as in the head-to-heads. judge_accuracy: the share where the averaged P(output
    1 is better) is on the labelled side of 0.5, a tie or an unreadable pair counting half
    (selfreward.judges.metrics); length_accuracy: "the longer output is better" on the same pairs; random: 0.5."""
    from selfreward.judges.agreement import limit_groups
    from selfreward.judges.metrics import baseline_metrics, judge_metrics
    from selfreward.judges.sets import load_judge_set

    groups = limit_groups(load_judge_set(CHECK_SET)[0], pairs, seed)
    triples = [(g["prompt"], g["responses"][0]["text"], g["responses"][1]["text"]) for g in groups]
    view = gen if forced(gen, mode) else _GenerateOnly(gen)
    evidence = both_orders(view, triples, sampling, desc=desc)
    judged, rows, p_correct = [], [], []
    for g, ev in zip(groups, evidence):
        first, second = g["responses"]
        p = ev["p_a"]
        judged.append({**g, "responses": [{**first, "score": p}, {**second, "score": None if p is None else 1 - p}]})
        label = 1 if first["human"] > second["human"] else 2
        if p is not None:
            p_correct.append(p if label == 1 else 1 - p)
        rows.append({"id": g["id"], "label": label, "p_1": p, "ab": ev["ab"], "ba": ev["ba"],
                     "len_1": len(first["text"]), "len_2": len(second["text"])})
    judge, base = judge_metrics(judged), baseline_metrics(groups, seed=seed)
    slots = {o: [_slot(ev[o]["p_first"]) for ev in evidence] for o in ("ab", "ba")}
    result = {"data": CHECK_SET, "source": CHECK_SOURCE, "method": FORCED if view is gen else GENERATED,
              "pairs": len(groups), "judge_accuracy": _r(judge["pairwise_accuracy"]),
              "length_accuracy": _r(base["length"]["pairwise_accuracy"]),
              "random_accuracy": _r(base["random"]["pairwise_accuracy"]),
              "shorter_preferred": {"pairs": judge["shorter_preferred_pairs"],
                                    "judge_accuracy": _r(judge["shorter_preferred_accuracy"]),
                                    "length_accuracy": _r(base["length"]["shorter_preferred_accuracy"])},
              "unreadable": sum(ev["p_a"] is None for ev in evidence),
              "mean_p_correct": _r(statistics.fmean(p_correct)) if p_correct else None,
              "position_bias": {o: _first_share(v) for o, v in slots.items()}}
    return result, rows


def check_line(check: dict) -> str:
    """One line for a terminal: the judge's accuracy beside the length heuristic's."""
    return (f"judge check on {check['pairs']} LLMBar Natural pairs ({check['method']}, both orders): judge "
            f"{_pct(check['judge_accuracy'])}, length heuristic {_pct(check['length_accuracy'])}, random 50%; "
            f"unreadable {check['unreadable']}")


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# --- orchestration: answer with each model, then judge; one model in memory at a time ----------------------------

def greedy(max_new_tokens: int, seed: int) -> Sampling:
    """Answers and verdicts are greedy: one deterministic answer per prompt, so a re-run gives the same table."""
    return Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)


def answer(gen: Generator, rows: list[dict], model: str, max_new_tokens: int, seed: int, desc: str) -> list[dict]:
    requests = [[{"role": "user", "content": r["instruction"]}] for r in rows]
    outs = gen.generate(requests, greedy(max_new_tokens, seed), desc=desc)
    return [{"id": r["id"], "instruction": r["instruction"], "model": model, "max_new_tokens": max_new_tokens,
             "answer": o[0]} for r, o in zip(rows, outs)]


def run_compare(cfg, names: dict[str, str], judge_spec: str, prompts: str, rows: list[dict], out) -> dict:
    """Answers of A and B (reused from `out` when they match), both-order verdicts, the judge check (unless
    eval.judge_check_pairs is 0), and compare.json's content.

    names: {"a": MODEL_A, "b": MODEL_B} as the user gave them; judge_spec: see resolve_judge. An openai:NAME
    judge is reached through judge.base_url and judge.api_key_env (or generation.*); every other judge is a
    model opened like A and B.
    """
    from pathlib import Path

    from selfreward.records import read_jsonl, write_json, write_jsonl

    out = Path(out)
    paths = {side: model_path(cfg, name) for side, name in names.items()}
    kind, judge_name = resolve_judge(judge_spec)
    judge_cfg, judge_path = (cfg, paths[kind]) if kind in paths else judge_target(cfg, judge_spec)
    if kind in paths and cfg.judge.backend == "openai":  # A or B judges: opened as they answered
        judge_cfg = dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, backend=None))
    answers = {}
    for side in ("a", "b"):
        file = out / f"answers-{side}.jsonl"
        cached = read_jsonl(file) if file.is_file() else []
        if _same_answers(cached, rows, paths[side], cfg.sample.max_new_tokens):
            print(f"[skip] answers of {side.upper()}: {file} is done", flush=True)
            answers[side] = cached
            continue
        gen = open_generator(cfg, paths[side], purpose=f"the answers of {side.upper()}")
        try:
            answers[side] = answer(gen, rows, paths[side], cfg.sample.max_new_tokens, cfg.seed,
                                   desc=f"compare: answers of {side.upper()}")
        finally:
            gen.close()
        write_jsonl(file, answers[side])
    sampling = greedy(cfg.judge.max_new_tokens, cfg.seed)
    gen = open_judge(open_generator, judge_cfg, judge_path, purpose="the judge")
    check = None
    try:
        method, verdicts = judge_pairs(gen, [r["instruction"] for r in rows], [x["answer"] for x in answers["a"]],
                                       [x["answer"] for x in answers["b"]], sampling, cfg.eval.margin,
                                       cfg.eval.judge_mode, desc="compare: judge (both orders)")
        if cfg.eval.judge_check_pairs > 0:
            check = judge_check(gen, cfg.eval.judge_check_pairs, cfg.eval.judge_mode, sampling, cfg.seed,
                                desc="compare: judge check (LLMBar Natural, both orders)")
    finally:
        gen.close()
    write_jsonl(out / "verdicts.jsonl", [{"id": r["id"], **v} for r, v in zip(rows, verdicts)])
    judge_label = names.get(kind) or (judge_spec if kind == "openai" else judge_name)
    if check is not None:
        write_jsonl(out / "judge-check.rows.jsonl", check[1])
        write_json(out / "judge-check.json", {"judge": judge_label, **check[0]})
    result = {"a": names["a"], "b": names["b"], "judge": judge_label,
              "judge_role": {"a": "MODEL_A", "b": "MODEL_B"}.get(kind, "another model"), "prompts": prompts,
              **summarize(verdicts, cfg.seed, method, cfg.eval.margin), "a_path": paths["a"], "b_path": paths["b"],
              "judge_path": judge_path, "answer_max_new_tokens": cfg.sample.max_new_tokens,
              "judge_max_new_tokens": cfg.judge.max_new_tokens, "judge_check": check[0] if check else None}
    write_json(out / "compare.json", result)
    return result


def model_path(cfg, name: str, role: str = "policy") -> str:
    """What the backend opens: a served model name as it is, else a local directory or a cached hub id."""
    from selfreward.backends import role_backend

    if role_backend(cfg, role)[0] in ("openai", "fake"):
        return name
    from selfreward.config import ModelConfig
    from selfreward.models import resolve_model

    return resolve_model(ModelConfig(name=name, cache_dir=cfg.model.cache_dir,
                                     trust_remote_code=cfg.model.trust_remote_code))


def _same_answers(cached: list[dict], rows: list[dict], model: str, max_new_tokens: int) -> bool:
    if not all(isinstance(c.get("answer"), str) for c in cached):
        return False
    return [(c.get("id"), c.get("instruction"), c.get("model"), c.get("max_new_tokens")) for c in cached] == \
        [(r["id"], r["instruction"], model, max_new_tokens) for r in rows]
