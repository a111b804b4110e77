"""Head-to-head evaluation: two models answer the same prompts; a pairwise judge decides every pair twice.

The protocol of the paper's GPT-4 evaluation: the judge sees the two answers in one order, then in the other, and
says which is better ([[A]], [[B]] or [[tie]], the last marker of its own output). A pair is a win for A only when
both orders prefer A, a loss only when both prefer B; everything else, including a verdict that cannot be parsed,
is a tie, so a judge that always picks the first (or second) slot yields ties, never wins. Unparseable verdicts are
counted apart, and the raw judge texts are kept so they can be parsed again.

Intervals: a percentile bootstrap over prompts. The n outcomes are resampled with replacement `draws` times (a
seeded random.Random); each rate's interval runs from the 2.5th to the 97.5th percentile of its resampled values
(statistics.quantiles, inclusive method).
"""

from __future__ import annotations

import dataclasses
import random
import re
import statistics
from importlib import resources

from selfreward.backends import Generator, Message, Sampling
from selfreward.errors import UserError
from selfreward.judge import neutralize

OUTCOMES = ("win", "tie", "loss")
_PLACEHOLDER = re.compile(r"\{(instruction|answer_a|answer_b)\}")
_TAG = re.compile(r"</?[A-Za-z][\w-]*>")
_DOUBLE_BRACKET = re.compile(r"\[(?=\[)")
_VERDICT = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)


def load_template() -> str:
    return resources.files("selfreward.templates").joinpath("pairwise.txt").read_text(encoding="utf-8")


def render(template: str, instruction: str, first: str, second: str) -> str:
    """One pass, as judge.render. Besides chat markers and the template's tags, every "[[" in the texts is
    broken, so an answer cannot carry a verdict marker into the judge's prompt."""
    tags = set(_TAG.findall(template))
    values = {"instruction": instruction, "answer_a": first, "answer_b": second}
    return _PLACEHOLDER.sub(lambda m: defuse(values[m.group(1)], tags),
                            template)


def defuse(text: str, markers: set[str]) -> str:
    """Untrusted text for a judge prompt: chat markers and the template's own markers made inert, and every "[["
    broken, so the text cannot carry a verdict or rating marker into the prompt."""
    return _DOUBLE_BRACKET.sub("[ ", neutralize(text.strip(), markers))


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'tie' from the last verdict marker of a judge's output; None when it wrote none."""
    found = _VERDICT.findall(text)
    if not found:
        return None
    last = found[-1]
    return "tie" if last.lower() == "tie" else last.upper()


def combine(v_ab: str | None, v_ba: str | None) -> str:
    """A's outcome from the verdict with A in the first slot (v_ab) and the one with A in the second (v_ba)."""
    if v_ab == "A" and v_ba == "B":
        return "win"
    if v_ab == "B" and v_ba == "A":
        return "loss"
    return "tie"


def pairwise_verdicts(judge: Generator, instructions: list[str], answers_a: list[str], answers_b: list[str],
                      sampling: Sampling, desc: str = "") -> list[dict]:
    """One row per prompt. Both orders of every pair go to the judge in one generate() call (one verdict each:
    sampling.n is taken as 1); verdict_ab and verdict_ba are in slot terms, as the judge wrote them."""
    if not len(instructions) == len(answers_a) == len(answers_b):
        raise ValueError("instructions, answers_a and answers_b must have the same length")
    template = load_template()
    triples = list(zip(instructions, answers_a, answers_b))
    a_first = [render(template, q, a, b) for q, a, b in triples]
    b_first = [render(template, q, b, a) for q, a, b in triples]
    requests: list[list[Message]] = [[{"role": "user", "content": text}] for text in a_first + b_first]
    outs = judge.generate(requests, dataclasses.replace(sampling, n=1), desc=desc or "compare: judge")
    n = len(instructions)
    rows = []
    for i, (q, a, b) in enumerate(triples):
        raw_ab, raw_ba = outs[i][0], outs[n + i][0]
        v_ab, v_ba = parse_verdict(raw_ab), parse_verdict(raw_ba)
        rows.append({"instruction": q, "answer_a": a, "answer_b": b, "raw_ab": raw_ab, "raw_ba": raw_ba,
                     "verdict_ab": v_ab, "verdict_ba": v_ba, "outcome": combine(v_ab, v_ba)})
    return rows


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


def summarize(rows: list[dict], seed: int = 0) -> dict:
    """tally() of the rows' outcomes, with the verdicts per slot (position bias shows as first >> second), the
    unparseable verdicts (counted as ties above) and the mean answer length of each side in characters."""
    verdicts = [v for r in rows for v in (r["verdict_ab"], r["verdict_ba"])]
    return {
        **tally([r["outcome"] for r in rows], seed),
        "parse_failures": verdicts.count(None),
        "verdicts": {"first": verdicts.count("A"), "second": verdicts.count("B"), "tie": verdicts.count("tie"),
                     "unparsed": verdicts.count(None)},
        "mean_len_a": mean_len([r["answer_a"] for r in rows]),
        "mean_len_b": mean_len([r["answer_b"] for r in rows]),
    }


def mean_len(texts: list[str]) -> float | None:
    return round(statistics.fmean(len(t) for t in texts), 1) if texts else None


def table(title: str, result: dict) -> str:
    """A one-screen report of summarize()'s result."""
    lines = [title, f"{'':10s}{'count':>7s}{'share':>9s}   95% CI"]
    for label, count, key in (("A wins", "wins", "win_rate"), ("ties", "ties", "tie_rate"),
                              ("A loses", "losses", "loss_rate")):
        rate, ci = result[key], (result["ci"] or {}).get(key)
        share = "-" if rate is None else f"{100 * rate:.1f}%"
        interval = "" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
        lines.append(f"{label:10s}{result[count]:>7d}{share:>9s}   {interval}")
    v = result["verdicts"]
    lines += [f"verdicts by slot: first {v['first']}, second {v['second']}, tie {v['tie']}, "
              f"unparseable {v['unparsed']} (counted as ties) of {2 * result['n']}",
              f"mean answer length (chars): A {result['mean_len_a']}, B {result['mean_len_b']}"]
    return "\n".join(lines)


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
    """Answers of A and B (reused from `out` when they match), both-order verdicts, and compare.json's content.

    names: {"a": MODEL_A, "b": MODEL_B} as the user gave them; judge_spec: see resolve_judge. An openai:NAME
    judge is reached through judge.base_url and judge.api_key_env (or generation.*); every other judge is a
    model opened like A and B.
    """
    from pathlib import Path

    from selfreward.records import read_jsonl, write_json, write_jsonl
    from selfreward.stages import judge_view, open_generator

    out = Path(out)
    paths = {side: model_path(cfg, name) for side, name in names.items()}
    kind, judge_name = resolve_judge(judge_spec)
    judge_cfg, judge_path = cfg, paths[kind] if kind in paths else judge_name
    if kind == "openai":
        judge_cfg = judge_view(dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, backend="openai")))
        if not judge_cfg.generation.base_url:
            raise UserError(f"--judge {judge_spec} needs the server's address: add the override "
                            "judge.base_url=URL (e.g. https://api.openai.com/v1)")
    elif kind == "local":
        judge_path = model_path(cfg, judge_name)
    answers = {}
    for side in ("a", "b"):
        file = out / f"answers-{side}.jsonl"
        cached = read_jsonl(file) if file.is_file() else []
        if _same_answers(cached, rows, paths[side], cfg.sample.max_new_tokens):
            print(f"[skip] answers of {side.upper()}: {file} is done", flush=True)
            answers[side] = cached
            continue
        gen = open_generator(cfg, paths[side])
        try:
            answers[side] = answer(gen, rows, paths[side], cfg.sample.max_new_tokens, cfg.seed,
                                   desc=f"compare: answers of {side.upper()}")
        finally:
            gen.close()
        write_jsonl(file, answers[side])
    gen = open_generator(judge_cfg, judge_path)
    try:
        verdicts = pairwise_verdicts(gen, [r["instruction"] for r in rows], [x["answer"] for x in answers["a"]],
                                     [x["answer"] for x in answers["b"]], greedy(cfg.judge.max_new_tokens, cfg.seed),
                                     desc="compare: judge (both orders)")
    finally:
        gen.close()
    write_jsonl(out / "verdicts.jsonl", [{"id": r["id"], **v} for r, v in zip(rows, verdicts)])
    judge_label = names.get(kind) or (judge_spec if kind == "openai" else judge_name)
    result = {"a": names["a"], "b": names["b"], "judge": judge_label,
              "judge_role": {"a": "MODEL_A", "b": "MODEL_B"}.get(kind, "another model"), "prompts": prompts,
              **summarize(verdicts, cfg.seed), "a_path": paths["a"], "b_path": paths["b"], "judge_path": judge_path,
              "answer_max_new_tokens": cfg.sample.max_new_tokens, "judge_max_new_tokens": cfg.judge.max_new_tokens}
    write_json(out / "compare.json", result)
    return result


def model_path(cfg, name: str) -> str:
    """What the backend opens: a served model name as it is, else a local directory or a cached hub id."""
    if cfg.generation.backend == "openai":
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
