"""IFEval (Zhou et al., 2023, "Instruction-Following Evaluation for Large Language Models"), scored offline.

Data: prompts that each carry one to three instructions a rule can check ("fewer than 50 words", "no commas",
"wrap the answer in JSON"...). One JSON object per line:
    {"key": int, "prompt": str, "instruction_id_list": [str, ...], "kwargs": [{...}, ...]}
with one kwargs object per instruction. The bundled copy (541 prompts, 834 instructions) is
data/bench/ifeval.jsonl; data/bench/SOURCES.md says where it comes from. kwargs entries whose value is null are
dropped, so the Hugging Face export (every key on every row, most of them null) loads as well.

Checks: CHECKS maps each of the 25 instruction ids of the reference implementation
(google-research/google-research, instruction_following_eval/instructions.py and evaluation_lib.py) to a
function (response, **kwargs) -> bool that follows the reference rule for rule, regular expressions included:
keywords are regular expressions there, so they are here. Where the reference calls NLTK (whose punkt model it
downloads at run time) this module uses regular expressions, so two checks approximate it (APPROXIMATE):
- length_constraints:number_sentences counts `split_sentences`, a punkt-like splitter (below), not punkt.
- change_case:capital_word_frequency counts the all-capital tokens of `capital_words`, which cuts words where
  nltk.word_tokenize's Treebank rules would (punctuation, brackets, quotes, dashes, contractions) inside the
  sentences of `split_sentences`.
Language checks use langdetect, seeded (DetectorFactory.seed = 0) as the reference now is. Text in which
langdetect finds nothing to go on counts as followed, as in the reference.

Strict: the response as given. Loose (the reference's upper bound): an instruction is followed if any of 8
variants of the response follows it: the response, without its first line, without its last line, without both
(each stripped), and each of those four with every '*' removed. An all-whitespace response (or variant) follows
nothing.

`score_ifeval` returns prompt_strict / prompt_loose (share of prompts whose instructions are all followed),
inst_strict / inst_loose (share of all instructions followed), n_prompts, n_instructions, per_type
{id: {n, strict, loose}} (shares per instruction id), unsupported (reference ids with no checker here: none),
approximate (APPROXIMATE), and rows: per prompt {key, instruction_id_list, follow_strict, follow_loose}, one
bool per instruction.
"""

from __future__ import annotations

import collections
import functools
import inspect
import json
import re
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import langdetect

from selfreward.errors import UserError
from selfreward.records import check_fields, read_jsonl

langdetect.DetectorFactory.seed = 0  # langdetect samples; a fixed seed gives the same verdict every run

LESS, AT_LEAST = "less than", "at least"
RELATIONS = (LESS, AT_LEAST)
CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
APPROXIMATE = ("change_case:capital_word_frequency", "length_constraints:number_sentences")
UNSUPPORTED: tuple[str, ...] = ()
ROW_FIELDS = {"key": int, "prompt": str, "instruction_id_list": list, "kwargs": list}
_REGEX_ARGS = ("keywords", "keyword", "forbidden_words", "section_spliter", "postscript_marker")


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == LESS else count >= threshold


def _language(text: str) -> str | None:
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:  # no letters to go on: the reference counts it as followed
        return None


# ---- sentence and word splitting (the reference uses NLTK here) ----

# Abbreviations no sentence ends on here (punkt's English model knows them; it may still end one before a
# frequent sentence starter).
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs"})
_SENTENCE_END = re.compile(r"""(?P<end>[.?!]+)["'”’)\]]*(?=\s|$)""")
_INITIALS = re.compile(r"[A-Za-z](?:\.[A-Za-z])*")  # J. / U.S. / e.g.


def split_sentences(text: str) -> list[str]:
    """Punkt-like sentence splitting. A sentence ends at a run of . ? ! (and any closing quotes or brackets) that
    is followed by whitespace or the end of the text, except: after an abbreviation in _ABBREVIATIONS or an
    initial or dotted acronym (J. / U.S. / e.g.); after an ellipsis (.. or more) unless a capital letter comes
    next; after a number ("1.") when a lower-case letter comes next. Newlines alone do not end a sentence
    (as in punkt). Empty pieces are dropped."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if _ends_sentence(text, match):
            sentences.append(text[start:match.end()])
            start = match.end()
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip()]


def _ends_sentence(text: str, match: re.Match) -> bool:
    end = match.group("end")
    following = text[match.end():].lstrip()[:1]
    if "?" in end or "!" in end:
        return True
    if len(end) > 1:
        return following.isupper()
    word = re.search(r"\S*$", text[:match.start()]).group().lstrip("\"'“‘([")
    if word.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(word):
        return False
    return not (word.isdigit() and following.islower())


# nltk.word_tokenize (NLTKWordTokenizer) rules that can change which tokens are all-capital, in its order: a
# quote opening a word, punctuation / brackets / quotes / dashes, a quote closing a word, contractions.
_QUOTE_OPEN = re.compile(r"(?i)(?<!\w)'(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)")
_WORD_CUT = re.compile(r"""[«“‘„`»”’"*;@#$%&?!\[\](){}<>\u2012-\u2015]|\.{2,}|--|[:,](?!\d)""")
_QUOTE_CLOSE = re.compile(r"(?<=[^'])'(?=\s)")
_CONTRACTION = re.compile(r"(?<=[^' ])('[sSmMdD]|'ll|'LL|'re|'RE|'ve|'VE|n't|N'T)(?=\s)")
_SPLIT_WORDS = [re.compile(p) for p in (  # words it cuts in two (its CONTRACTIONS2 and CONTRACTIONS3)
    r"(?i)\b(can)(not)\b", r"(?i)\b(d)('ye)\b", r"(?i)\b(gim)(me)\b", r"(?i)\b(gon)(na)\b", r"(?i)\b(got)(ta)\b",
    r"(?i)\b(lem)(me)\b", r"(?i)\b(more)('n)\b", r"(?i)\b(wan)(na)(?=\s)", r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b")]
_FINAL_PERIOD = re.compile(r"""(?<=[^.])\.(?=[\]\)}>"'»”’\s]*$)""")


def capital_words(text: str) -> list[str]:
    """The all-capital tokens of `text` as nltk.word_tokenize would cut it, sentence by sentence."""
    words = []
    for sentence in split_sentences(text):
        sentence = _WORD_CUT.sub(" ", _QUOTE_OPEN.sub(" ", _FINAL_PERIOD.sub(" ", sentence)))
        sentence = _CONTRACTION.sub(r" \1", _QUOTE_CLOSE.sub(" ", f" {sentence} "))
        for pattern in _SPLIT_WORDS:
            sentence = pattern.sub(r" \1 \2 ", sentence)
        words += sentence.split()
    return [w for w in words if w.isupper()]


# ---- the checks: one per instruction id, (response, **kwargs) -> bool ----

def keywords_existence(response: str, *, keywords: list[str]) -> bool:
    return all(re.search(k, response, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(keyword.strip(), response, flags=re.IGNORECASE)), relation, frequency)


def forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    return not any(re.search(r"\b" + w + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words)


def letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    count = collections.Counter(response.lower())[letter.strip().lower()]
    return _compare(count, let_relation, let_frequency)


def response_language(response: str, *, language: str) -> bool:
    detected = _language(response)
    return detected is None or detected == language


def number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    return _compare(len(split_sentences(response)), relation, num_sentences)


def number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if 0 < index < len(paragraphs) - 1:  # an empty paragraph between two dividers
                return False
            count -= 1
    return count == num_paragraphs


def number_words(response: str, *, num_words: int, relation: str) -> bool:
    return _compare(len(re.findall(r"\w+", response)), relation, num_words)


def nth_paragraph_first_word(response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    paragraphs = response.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count or not paragraphs[nth_paragraph - 1].strip():
        return False
    word = paragraphs[nth_paragraph - 1].split()[0].strip().lstrip("'").lstrip('"')
    first = re.match(r"""[^.,?!'"]*""", word).group().lower()
    return count == num_paragraphs and first == first_word.lower()


def number_placeholders(response: str, *, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def postscript(response: str, *, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    known = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}
    pattern = known.get(marker, r"\s*" + marker.lower() + r".*$")
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def constrained_response(response: str) -> bool:
    return any(option in response.strip() for option in CONSTRAINED_OPTIONS)


def number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double) >= num_highlights


def multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    sections = re.split(r"\s?" + section_spliter.strip() + r"\s?\d+\s?", response)
    return len(sections) - 1 >= num_sections


def json_format(response: str) -> bool:
    text = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(prefix)
    try:
        json.loads(text.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def title(response: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


def two_responses(response: str) -> bool:
    parts = response.split("******")
    valid = []
    for index, part in enumerate(parts):
        if part.strip():
            valid.append(part.strip())
        elif 0 < index < len(parts) - 1:
            return False
    return len(valid) == 2 and valid[0] != valid[1]


def repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(response: str, *, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    return _compare(len(capital_words(response)), capital_relation, capital_frequency)


def english_capital(response: str) -> bool:
    return response.isupper() and _language(response) in (None, "en")


def english_lowercase(response: str) -> bool:
    return response.islower() and _language(response) in (None, "en")


def no_comma(response: str) -> bool:
    return "," not in response


def quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


CHECKS: dict[str, Callable[..., bool]] = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keywords_frequency,
    "keywords:forbidden_words": forbidden_words,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_words": number_words,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": json_format,
    "detectable_format:title": title,
    "combination:two_responses": two_responses,
    "combination:repeat_prompt": repeat_prompt,
    "startend:end_checker": end_checker,
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "punctuation:no_comma": no_comma,
    "startend:quotation": quotation,
}


# ---- loading ----

def load_ifeval(path: str | None = None) -> list[dict[str, Any]]:
    """The bundled IFEval prompts (path None) or a JSONL file of the same format, validated line by line."""
    if path is None:
        with resources.as_file(resources.files("selfreward.data").joinpath("bench", "ifeval.jsonl")) as p:
            return _load(Path(p), "builtin ifeval.jsonl")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"IFEval file not found: {p} (give a JSONL file with key, prompt, instruction_id_list "
                        "and kwargs on each line)")
    return _load(p, str(p))


def _load(path: Path, where: str) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    if not rows:
        raise UserError(f"{where}: no rows; IFEval needs one JSON object per line")
    lines = [n for n, raw in enumerate(path.read_bytes().split(b"\n"), 1) if raw.decode("utf-8").strip()]
    unknown: dict[str, int] = {}
    out = []
    for row, line in zip(rows, lines):
        at = f"{where} line {line}"
        check_fields(row, ROW_FIELDS, at)
        if not row["prompt"].strip():
            raise UserError(f"{at}: field 'prompt' is empty")
        ids, kwargs = row["instruction_id_list"], row["kwargs"]
        if not ids:
            raise UserError(f"{at}: field 'instruction_id_list' is empty; give at least one instruction")
        if len(ids) != len(kwargs):
            raise UserError(f"{at}: field 'kwargs' has {len(kwargs)} entries for {len(ids)} instructions; "
                            "give one object per instruction")
        for id_ in ids:
            if not isinstance(id_, str):
                raise UserError(f"{at}: field 'instruction_id_list' must hold strings, got {type(id_).__name__}")
            if id_ not in CHECKS:
                unknown.setdefault(id_, line)
        clean = [_kwargs(id_, kw, f"{at} field 'kwargs' [{j}] ({id_})")
                 for j, (id_, kw) in enumerate(zip(ids, kwargs)) if id_ in CHECKS]
        out.append({"key": row["key"], "prompt": row["prompt"], "instruction_id_list": ids, "kwargs": clean})
    if unknown:
        listed = ", ".join(f"{i} (line {n})" for i, n in unknown.items())
        raise UserError(f"{where}: unknown IFEval instruction id(s): {listed}; known ids are those of "
                        "selfreward.evals.ifeval.CHECKS")
    return out


def _kwargs(id_: str, kwargs: Any, at: str) -> dict[str, Any]:
    if not isinstance(kwargs, dict):
        raise UserError(f"{at}: must be a JSON object, got {type(kwargs).__name__}")
    given = {k: v for k, v in kwargs.items() if v is not None}
    wanted = _parameters(id_)
    extra = sorted(set(given) - set(wanted))
    if extra:
        raise UserError(f"{at}: unexpected argument(s) {', '.join(extra)}; this instruction takes "
                        f"{', '.join(wanted) or 'none'}")
    for name, kind in wanted.items():
        if name not in given:
            raise UserError(f"{at}: missing argument '{name}'")
        _check_value(name, given[name], kind, at)
    return given


@functools.cache
def _parameters(id_: str) -> dict[str, Any]:
    hints = typing.get_type_hints(CHECKS[id_])
    return {name: hints[name] for name, p in inspect.signature(CHECKS[id_]).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_value(name: str, value: Any, kind: Any, at: str) -> None:
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
          str: lambda v: isinstance(v, str) and bool(v.strip()),
          list[str]: lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v)}[kind]
    if not ok(value):
        want = {int: "a whole number >= 0", str: "a non-empty string", list[str]: "a list of non-empty strings"}
        raise UserError(f"{at}: argument '{name}' must be {want[kind]}, got {json.dumps(value)}")
    if name.endswith("relation") and value not in RELATIONS:
        raise UserError(f"{at}: argument '{name}' must be one of {', '.join(RELATIONS)}, got {value!r}")
    if name == "nth_paragraph" and value < 1:
        raise UserError(f"{at}: argument 'nth_paragraph' counts from 1, got {value}")
    if name == "letter" and len(value.strip()) != 1:
        raise UserError(f"{at}: argument 'letter' must be a single letter, got {value!r}")
    for pattern in (value if isinstance(value, list) else [value]) if name in _REGEX_ARGS else []:
        try:
            re.compile(pattern)
        except re.error as e:
            raise UserError(f"{at}: argument '{name}' is used as a regular expression and {pattern!r} is not "
                            f"one ({e})") from None


# ---- scoring ----

def loose_variants(response: str) -> list[str]:
    """The reference's loose variants: as is, without the first / last / both lines, each also without '*'."""
    lines = response.split("\n")
    trimmed = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", "")] + trimmed + [t.replace("*", "") for t in trimmed]


def follows(response: str, instruction_id: str, kwargs: dict[str, Any]) -> bool:
    """Strict verdict for one instruction; an empty (all-whitespace) response follows nothing."""
    return bool(response.strip()) and CHECKS[instruction_id](response, **kwargs)


def score_row(row: dict[str, Any], response: str) -> dict[str, Any]:
    variants = loose_variants(response)
    pairs = list(zip(row["instruction_id_list"], row["kwargs"]))
    return {"key": row["key"], "instruction_id_list": row["instruction_id_list"],
            "follow_strict": [follows(response, i, kw) for i, kw in pairs],
            "follow_loose": [any(follows(v, i, kw) for v in variants) for i, kw in pairs]}


def score_ifeval(rows: list[dict[str, Any]], responses: list[str]) -> dict[str, Any]:
    if len(rows) != len(responses):
        raise UserError(f"IFEval: {len(responses)} responses for {len(rows)} prompts; give one per prompt")
    if not rows:
        raise UserError("IFEval: no prompts to score")
    unknown = sorted({i for row in rows for i in row["instruction_id_list"] if i not in CHECKS})
    if unknown:
        raise UserError(f"IFEval: unknown instruction id(s): {', '.join(unknown)}")
    results = [score_row(row, response) for row, response in zip(rows, responses)]
    strict = [f for r in results for f in r["follow_strict"]]
    loose = [f for r in results for f in r["follow_loose"]]
    return {
        "prompt_strict": _share(all(r["follow_strict"]) for r in results),
        "prompt_loose": _share(all(r["follow_loose"]) for r in results),
        "inst_strict": _share(strict),
        "inst_loose": _share(loose),
        "n_prompts": len(results),
        "n_instructions": len(strict),
        "per_type": _per_type(results),
        "unsupported": list(UNSUPPORTED),
        "approximate": list(APPROXIMATE),
        "rows": results,
    }


def _per_type(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    seen: dict[str, list[tuple[bool, bool]]] = collections.defaultdict(list)
    for r in results:
        for id_, s, lo in zip(r["instruction_id_list"], r["follow_strict"], r["follow_loose"]):
            seen[id_].append((s, lo))
    return {id_: {"n": len(v), "strict": _share(s for s, _ in v), "loose": _share(lo for _, lo in v)}
            for id_, v in sorted(seen.items())}


def _share(flags: Any) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0
