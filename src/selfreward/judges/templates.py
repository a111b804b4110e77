"""The one loader and the one renderer of judge prompts.

A template is plain text with `{name}` placeholders. Each kind of judge prompt has its placeholders:

    rubric      {instruction} {response}                    templates/judge.txt, or judge.template (a path)
    pairwise    {instruction} {answer_a} {answer_b}         templates/pairwise.txt (explain, then [[A]]/[[B]]/[[tie]])
    pairwise_choice  the same                               templates/pairwise_choice.txt (one letter: forced choice)
    meta        {instruction} {response} {judgment_a} {judgment_b}
                                                            templates/meta_judge.txt (Meta-Rewarding's meta-judge:
                                                            which judgment applies the rubric better; [[A]]/[[B]])
    meta_choice the same                                    templates/meta_judge_choice.txt (one letter: forced choice)
    mtbench-*   FastChat's single-answer grading fields     templates/mtbench-<name>.txt (system, "<<<USER>>>", user)

`render` substitutes in one pass, so braces or placeholder names inside the texts are never substituted again.
The inserted texts are untrusted; only the template's own delimiters are escaped inside them (see
`selfreward.judges.escape`), everything else reaches the judge byte for byte. Special-token text inside them stays
plain text because the backends tokenize message contents with special tokens split.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from selfreward.errors import UserError
from selfreward.judges.escape import delimiters, escape

PLACEHOLDERS = {"rubric": ("instruction", "response"), "pairwise": ("instruction", "answer_a", "answer_b"),
                "pairwise_choice": ("instruction", "answer_a", "answer_b"),
                "meta": ("instruction", "response", "judgment_a", "judgment_b"),
                "meta_choice": ("instruction", "response", "judgment_a", "judgment_b")}
_BUILTIN = {"rubric": "judge.txt", "pairwise": "pairwise.txt", "pairwise_choice": "pairwise_choice.txt",
            "meta": "meta_judge.txt", "meta_choice": "meta_judge_choice.txt"}
_FIELD = re.compile(r"\{(\w+)\}")
SYSTEM_SPLIT = "\n<<<USER>>>\n"


def load(kind: str, spec: str = "builtin", key: str = "judge.template") -> str:
    """The template text of a kind: the shipped one ("builtin"), or a UTF-8 file holding every placeholder.
    `key`: the config key that named the file, for the messages."""
    if spec == "builtin":
        return _shipped(_BUILTIN.get(kind, f"{kind}.txt"))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"judge template not found: {path} ({key})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"judge template {path}: not UTF-8 text ({key})") from None
    missing = set(PLACEHOLDERS.get(kind, ())) - set(_FIELD.findall(text))
    if missing:
        raise UserError(f"judge template {path} lacks the placeholder(s) "
                        + ", ".join("{" + m + "}" for m in sorted(missing)) + f" ({key})")
    return text


@cache
def _shipped(name: str) -> str:
    return resources.files("selfreward.templates").joinpath(name).read_text(encoding="utf-8")


def split_system(text: str) -> tuple[str, str]:
    """(system prompt, user template) of a template with a "<<<USER>>>" line (FastChat's grading templates)."""
    system, _, user = text.partition(SYSTEM_SPLIT)
    return system, user


def render(template: str, values: dict[str, str]) -> str:
    """`template` with each {name} of `values` replaced by its text, stripped, with the template's own delimiters
    escaped inside it. Placeholders not in `values` stay as they are."""
    patterns = _delimiters(template)
    safe = {k: escape(v.strip(), patterns) for k, v in values.items()}
    return _FIELD.sub(lambda m: safe.get(m.group(1), m.group(0)), template)


@cache
def _delimiters(template: str):
    return delimiters(template, tuple(sorted(set(_FIELD.findall(template)))))
