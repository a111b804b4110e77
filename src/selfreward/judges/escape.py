"""The judge template's own delimiters, escaped inside the texts put into it; nothing else is touched.

A template's delimiters are:

- its tags: <response> and </response> for a template that has either;
- its lines, less their placeholders: "### Response:", "[The End of Assistant's Answer]", "<|The Start of Reference
  Answer|>", the rubric's own sentences. Lines without a letter or digit ("---") are not delimiters: markdown uses
  them everywhere;
- "[[", when the template itself asks for "[[verdict]]" or "[[rating]]" markers.

Each is matched case-insensitively and with any whitespace between its parts: </ response>, </RESPONSE>,
</response\\n> and <response id="2"> are the template's tags; "###response :" is its "### Response:" line. A line
delimiter counts at the start of a line of the inserted text (after any indentation), where a header or an end marker
would have to stand to be read as one.

A match is broken by a space after its first character ("< /response>", "# ## Response:", "[ The End of ...]",
"[ [10]]"), which keeps it readable as text; every delimiter's pattern wants its first two characters side by side,
so an escaped delimiter is never matched again and escaping twice changes nothing. Everything else in the text stays
byte for byte. Special-token text ("<|im_end|>") needs nothing here: the backends tokenize message contents with
special tokens split (selfreward.backends.chat), so it stays plain text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TAG = re.compile(r"(?<!<)</?([A-Za-z][\w-]*)>(?!>)")  # <response>, </response>; not the "<USER>" of "<<<USER>>>"
_UNIT = re.compile(r"\w+|[^\w\s]")  # a word or one other character that is not whitespace
_DOUBLE_BRACKET = r"\[(?=\[)"  # each "[" that opens a "[[": "[[[" becomes "[ [ ["
_MAX_PASSES = 8


def delimiters(template: str, placeholders: Iterable[str] = ()) -> list[re.Pattern]:
    """Patterns of the template's own delimiters (see the module docstring). `placeholders`: the names of its
    {name} fields; the text around a field on its line is a delimiter of its own."""
    names = sorted(set(placeholders))
    if names:
        template = re.sub(r"\{(?:" + "|".join(map(re.escape, names)) + r")\}", "\n", template)
    patterns = {_tag_pattern(name) for name in {n.lower() for n in _TAG.findall(template)}}
    for line in template.splitlines():
        line = line.strip()
        if len(line) < 2 or not re.search(r"[^\W_]", line) or _TAG.fullmatch(line):
            continue
        patterns.add(r"(?m)^[ \t]*" + _flexible(line))
    if "[[" in template:
        patterns.add(_DOUBLE_BRACKET)
    return [re.compile(p, re.IGNORECASE) for p in sorted(patterns, key=lambda p: (-len(p), p))]


def escape(text: str, patterns: Iterable[re.Pattern]) -> str:
    """`text` with every match of `patterns` broken by a space after its first character; the rest unchanged."""
    patterns = list(patterns)
    for _ in range(_MAX_PASSES):  # one pass is enough unless escaping one delimiter completes another
        before = text
        for pattern in patterns:
            text = pattern.sub(_break, text)
        if text == before:
            break
    return text


def _break(match: re.Match) -> str:
    found = match.group(0)
    lead = len(found) - len(found.lstrip(" \t"))  # a line delimiter's match starts with the line's indentation
    return found[:lead + 1] + " " + found[lead + 1:]


def _tag_pattern(name: str) -> str:
    """<name>, </name>, <name attr="x">, </ name>, </name\\n>, <name/>, any case; not "< name>" (the escaped
    form) nor <name-x> or <names>."""
    return r"<(?:/\s*)?" + re.escape(name) + r"(?![\w-])[^<>]*>"


def _flexible(line: str) -> str:
    """`line` as a pattern that takes any whitespace (or none) between its words and signs, except between its
    first two characters, where the escape puts its space; a last word must end there ("Response" is not
    "Responses")."""
    units = _UNIT.findall(line)
    if len(units[0]) == 1 and len(units) > 1:  # "#", "[" or "Q": the next unit must follow at once
        units = [units[0] + units[1]] + units[2:]
    pattern = re.escape(units[0]) + "".join(r"\s*" + re.escape(u) for u in units[1:])
    return pattern + (r"(?!\w)" if line[-1].isalnum() or line[-1] == "_" else "")
