"""Self-Instruct prompt generation: few-shot request building, cleaning and filters (pure functions)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from importlib import resources

from rouge_score import rouge_scorer, tokenizers

_NEXT_ITEM = re.compile(r"\n\s*(?:\d+\s*[.)]|(?:task|instruction)\s*\d+\s*:)", re.I)
# A draft that opens like an assistant's reply is an answer to the request, not a new task.
_REPLY = re.compile(r"^(sure\b|certainly\b|of course\b|here('s| is| are)\b|i('m| am) (ready|here|happy|sorry|an ai)"
                    r"|i'd be happy|as an ai\b)", re.I)
_LEAD = re.compile(r"^\s*(?:(?:new\s+)?(?:task|instruction|question)\s*\d*\s*[:.)-]\s*|\d+\s*[.)]\s*)", re.I)


def _template() -> str:
    return resources.files("selfreward.templates").joinpath("self_instruct.txt").read_text(encoding="utf-8")


def request_lines() -> list[str]:
    """The request's own sentences: a draft that copies them is an echo, not a task."""
    return [line.strip() for line in _template().splitlines() if line.strip() and "{examples}" not in line]


def few_shot_request(examples: list[str]) -> str:
    template = _template()
    listed = "\n".join(f"{i}. {' '.join(e.split())}" for i, e in enumerate(examples, 1))
    return template.replace("{examples}", listed)


def example_pool(prompts: list[str], max_words: int = 60) -> list[str]:
    """Seed prompts short enough to serve as few-shot examples: long ones make every request slow to read
    and pull the model toward writing essays instead of tasks."""
    short = [p for p in prompts if len(p.split()) <= max_words]
    return short if len(short) >= 8 else prompts


def draw_examples(pool: list[str], shots: int, rng: random.Random) -> list[str]:
    return rng.sample(pool, min(shots, len(pool)))


def clean(text: str) -> str:
    """The task the model wrote: its first paragraph or list item, without a "Task:"/numbering prefix or quotes."""
    text = text.strip().split("\n\n")[0].strip()
    text = _LEAD.sub("", text).strip()
    text = _NEXT_ITEM.split(text)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class PromptFilter:
    """Keeps a prompt unless it is empty, too short/long, banned, reads as a reply, a duplicate, or ROUGE-L-similar
    to one kept."""

    min_words: int
    max_words: int
    rouge_l_max: float
    banned_words: list[str]
    _seen: set[str] = field(default_factory=set)
    _tokens: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self._banned = re.compile(r"\b(" + "|".join(re.escape(w) for w in self.banned_words) + r")\b", re.I) \
            if self.banned_words else None

    def add_reference(self, text: str) -> None:
        self._seen.add(normalize(text))
        self._tokens.append(self._tokenizer.tokenize(text))

    def reason(self, text: str) -> str | None:
        """Why `text` is rejected, or None if it is kept (and then remembered as a reference)."""
        if not text:
            return "empty"
        words = len(text.split())
        if words < self.min_words:
            return "too short"
        if words > self.max_words:
            return "too long"
        if self._banned and self._banned.search(text):
            return "banned word"
        if _REPLY.match(text):
            return "reads as a reply"
        if normalize(text) in self._seen:
            return "duplicate"
        tokens = self._tokenizer.tokenize(text)
        # Pre-tokenized LCS, as Self-Instruct's own filter does: the same numbers as RougeScorer.score, far faster.
        if any(rouge_scorer._score_lcs(ref, tokens).fmeasure > self.rouge_l_max for ref in self._tokens):
            return "similar (ROUGE-L)"
        self._seen.add(normalize(text))
        self._tokens.append(tokens)
        return None
