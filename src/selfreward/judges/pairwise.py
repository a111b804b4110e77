"""Pairwise judging: the judge sees two answers to one question and names the better one, in both orders.

The verdict is the last [[A]], [[B]] or [[tie]] marker of the judge's own output. A pair is a win for A only when
both orders prefer A, a loss only when both prefer B; everything else, including a verdict that cannot be parsed,
is a tie, so a judge that always picks the first (or second) slot yields ties, never wins.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from selfreward.backends import OPTION_PROBS, Generator, Message, Sampling
from selfreward.judges.templates import load, render

_VERDICT = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
# A generated verdict ends the judgment: the templates ask for it alone on the last line, and nothing after it was
# read. (parse_verdict reads the last marker; with these stops a judgment holds at most one written this way.)
VERDICT_STOP = ("[[A]]", "[[B]]", "[[tie]]", "[[Tie]]", "[[TIE]]", "[[a]]", "[[b]]")


def request(template: str, instruction: str, first: str, second: str) -> list[Message]:
    return [{"role": "user", "content": render(template, {"instruction": instruction, "answer_a": first,
                                                          "answer_b": second})}]


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
    template = load("pairwise")
    triples = list(zip(instructions, answers_a, answers_b))
    requests = [request(template, q, a, b) for q, a, b in triples] + [request(template, q, b, a) for q, a, b in triples]
    outs = judge.generate(requests, dataclasses.replace(sampling, n=1, stop=VERDICT_STOP),
                          desc=desc or "compare: judge")
    n = len(instructions)
    rows = []
    for i, (q, a, b) in enumerate(triples):
        raw_ab, raw_ba = outs[i][0], outs[n + i][0]
        v_ab, v_ba = parse_verdict(raw_ab), parse_verdict(raw_ba)
        rows.append({"instruction": q, "answer_a": a, "answer_b": b, "raw_ab": raw_ab, "raw_ba": raw_ba,
                     "verdict_ab": v_ab, "verdict_ba": v_ba, "outcome": combine(v_ab, v_ba)})
    return rows


# --- forced choice: P(first is better) from the judge's next-token probabilities ----------------------------------

CHOICE_PREFIX = "Better response:"  # the assistant's turn starts with it; the next token is the letter
OPTIONS = ["A", "B"]
MIN_OPTION_MASS = 0.1  # below it the judge was not about to answer with a letter: no preference is read


@dataclass(frozen=True)
class Task:
    """What a two-way comparison asks: the template kind of the forced choice (one letter) and of the generated
    verdict (explain, then [[A]]/[[B]]), the placeholders the two compared texts go into, and the assistant's
    prefix the forced-choice letter follows. `spec`: "builtin" (the shipped template of each kind) or one file used
    for both; `key`: the config key that names it, for messages."""
    choice_kind: str
    verdict_kind: str
    first: str
    second: str
    prefix: str
    spec: str = "builtin"
    key: str = "judge.template"


PAIRWISE = Task("pairwise_choice", "pairwise", "answer_a", "answer_b", CHOICE_PREFIX)
# An item: (context, first, second). The context is the instruction, or a mapping of the template's other
# placeholders ({"instruction": ..., "response": ...} for the meta-judge).
Item = tuple[str | dict[str, str], str, str]


def _requests(template: str, items: list[Item], task: Task) -> list[list[Message]]:
    out = []
    for context, first, second in items:
        values = {"instruction": context} if isinstance(context, str) else dict(context)
        values.update({task.first: first, task.second: second})
        out.append([{"role": "user", "content": render(template, values)}])
    return out


def p_first(gen: Generator, triples: list[Item], sampling: Sampling, desc: str = "pairwise",
            task: Task = PAIRWISE) -> list[dict]:
    """For each (context, first, second): {"p_first": P(first is better) or None, evidence}.

    With a backend that gives next-token probabilities the judge answers the short forced-choice template
    (task.choice_kind, pairwise_choice by default) and p_first = P(A) / (P(A) + P(B)) after task.prefix, None when
    P(A) + P(B) is below MIN_OPTION_MASS. Otherwise (an API judge) it writes a verdict with the verdict template
    (task.verdict_kind, pairwise): [[A]] is 1, [[B]] 0, [[tie]] 0.5, and no verdict None; the raw text is kept.
    """
    if OPTION_PROBS in gen.capabilities:
        requests = _requests(load(task.choice_kind, task.spec, task.key), triples, task)
        probs = gen.option_probs(requests, [task.prefix] * len(requests), OPTIONS, desc=desc)
        return [_from_probs(pa, pb) for pa, pb in probs]
    requests = _requests(load(task.verdict_kind, task.spec, task.key), triples, task)
    outs = gen.generate(requests, dataclasses.replace(sampling, n=1, stop=VERDICT_STOP), desc=desc)
    return [_from_verdict(out[0]) for out in outs]


def _from_probs(pa: float, pb: float) -> dict:
    mass = pa + pb
    ok = math.isfinite(mass) and mass >= MIN_OPTION_MASS
    return {"p_first": pa / mass if ok else None, "option_probs": [pa, pb]}


def _from_verdict(raw: str) -> dict:
    verdict = parse_verdict(raw)
    return {"p_first": {"A": 1.0, "B": 0.0, "tie": 0.5}.get(verdict), "raw": raw, "verdict": verdict}


def both_orders(gen: Generator, triples: list[Item], sampling: Sampling, desc: str = "pairwise",
                task: Task = PAIRWISE) -> list[dict]:
    """For each (context, a, b), asked with a first and with b first in one call: {"p_a": P(a is better), the
    average of the two orders, so a judge's preference for a slot cancels; None unless both orders were read;
    "ab", "ba": each order's evidence}."""
    swapped = [(q, b, a) for q, a, b in triples]
    rows = p_first(gen, triples + swapped, sampling, desc=desc, task=task)
    n = len(triples)
    out = []
    for ab, ba in zip(rows[:n], rows[n:]):
        both = ab["p_first"] is not None and ba["p_first"] is not None
        out.append({"p_a": (ab["p_first"] + 1 - ba["p_first"]) / 2 if both else None, "ab": ab, "ba": ba})
    return out
