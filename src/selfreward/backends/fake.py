"""A deterministic stand-in model for tests: every capability, no weights, no torch.

Selected like any backend (generation.backend=fake or judge.backend=fake); its "model" is any string. It answers
from the request alone, so every stage can run through it and tests need not patch anything:

    a meta-judge request ("<judgment_a>" in it)      the judgment with the lower "Score: N" wins: "... [[A]]" or
                                                     "... [[B]]"; equal scores (or none): "[[A]]", first-slot bias
    a rubric judge request ("Score:" in the prompt)  judgment j of request i of a call: "Looks fine. Score: (i+j) % 6"
    a pairwise request ("[[A]]" in the prompt)       "The first is better. [[A]]": pure first-slot bias
    anything else                                    "Fake answer i.j to: <the request's first words>"
    option_probs                                     "A" 0.7 vs "B" 0.3 (first-slot bias); a meta-judge request:
                                                     P(A) 0.9 when judgment A has the lower score, 0.3 when the
                                                     higher, 0.6 otherwise (a preference plus a first-slot bias
                                                     that both orders cancel); other options weighted
                                                     by a hash of the model, request, prefix and option
    logprobs                                         -0.1 per character of the continuation, minus a hash-based
                                                     share that depends on the model, so two models differ

Every call is appended to CALLS ({"model", "method", "requests", "desc", ...}) for tests to inspect.
"""

from __future__ import annotations

import hashlib
import re

from selfreward.backends import (
    GENERATE,
    LOGPROBS,
    OPTION_PROBS,
    Completion,
    LogProb,
    Message,
    Sampling,
    stop_end,
    texts,
)

CALLS: list[dict] = []


def _unit(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _text(messages: list[Message]) -> str:
    return "\n".join(m["content"] for m in messages)


_META_PROBS = {"A": [0.9, 0.1], "B": [0.3, 0.7], None: [0.6, 0.4]}
_SCORE = re.compile(r"Score:\s*(\d+)")


def _meta_preference(prompt: str) -> str | None:
    """The fake meta-judge's choice: the judgment with the lower score ("A" or "B"); None when they tie."""
    scores = []
    for slot in ("a", "b"):
        found = re.search(rf"<judgment_{slot}>(.*?)</judgment_{slot}>", prompt, re.S)
        numbers = _SCORE.findall(found.group(1)) if found else []
        scores.append(int(numbers[-1]) if numbers else None)
    a, b = scores
    if a is None or b is None or a == b:
        return None
    return "A" if a < b else "B"


def _ended(reply: str, sampling: Sampling) -> Completion:
    limit = 4 * sampling.max_new_tokens
    end = stop_end(reply[:limit], sampling.stop)
    if end is not None:
        return Completion(reply[:end].strip(), True)
    return Completion(reply[:limit], len(reply) <= limit)


class FakeGenerator:
    capabilities = frozenset({GENERATE, OPTION_PROBS, LOGPROBS})

    def __init__(self, model_path: str, **_settings):
        self.model = str(model_path)
        self.closed = False

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        return texts(self.complete(requests, sampling, desc))

    def complete(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[Completion]]:
        """Every reply ends of itself, except that a reply longer than 4 * max_new_tokens characters is cut there
        and marked unfinished, as a real model's would be; a reply with a stop string ends right after it."""
        assert not self.closed, "generate() after close()"
        CALLS.append({"model": self.model, "method": "generate", "requests": requests, "sampling": sampling,
                      "desc": desc})
        replies = [[self._reply(_text(r), i, j) for j in range(sampling.n)] for i, r in enumerate(requests)]
        return [[_ended(x, sampling) for x in row] for row in replies]

    def _reply(self, prompt: str, i: int, j: int) -> str:
        if "<judgment_a>" in prompt:
            better = _meta_preference(prompt)
            return f"Judgment {better or 'A'} applies the scale more accurately. [[{better or 'A'}]]"
        if "[[A]]" in prompt:
            return "The first is better. [[A]]"
        if "Score:" in prompt:
            return f"Looks fine. Score: {(i + j) % 6}"
        return f"Fake answer {i}.{j} to: {' '.join(prompt.split()[:6])}"

    def option_probs(self, requests: list[list[Message]], prefixes: list[str], options: list[str],
                     desc: str = "") -> list[list[float]]:
        CALLS.append({"model": self.model, "method": "option_probs", "requests": requests, "prefixes": prefixes,
                      "options": options, "desc": desc})
        if options == ["A", "B"]:
            return [_META_PROBS[_meta_preference(_text(r))] if "<judgment_a>" in _text(r) else [0.7, 0.3]
                    for r in requests]
        out = []
        for r, p in zip(requests, prefixes):
            weights = [_unit(self.model, _text(r), p, o) for o in options]
            out.append([w / sum(weights) for w in weights])
        return out

    def logprobs(self, requests: list[list[Message]], continuations: list[str], desc: str = "") -> list[LogProb]:
        CALLS.append({"model": self.model, "method": "logprobs", "requests": requests,
                      "continuations": continuations, "desc": desc})
        return [LogProb(-0.1 * len(c) - _unit(self.model, _text(r), c), max(1, len(c) // 4))
                for r, c in zip(requests, continuations)]

    def close(self) -> None:
        self.closed = True
