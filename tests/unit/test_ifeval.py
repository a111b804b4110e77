"""IFEval: every check on a hand-written pass and fail, loose vs strict, the metrics, the bundled data, bad files."""

import json

import pytest

from selfreward.errors import UserError
from selfreward.evals.ifeval import CHECKS, capital_words, load_ifeval, loose_variants, score_ifeval, split_sentences

LEAST, LESS = "at least", "less than"

# (instruction id, kwargs, response, expected): for every id at least one True and one False.
CASES = [
    ("keywords:existence", {"keywords": ["apple", "pear"]}, "The Apple and the pear.", True),
    ("keywords:existence", {"keywords": ["apple", "pear"]}, "Only apples here.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": LEAST}, "cat, cat and Cat", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": LEAST}, "cat and cat", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LESS}, "one cat", True),
    ("keywords:forbidden_words", {"forbidden_words": ["dog"]}, "I like dogs.", True),  # whole words only
    ("keywords:forbidden_words", {"forbidden_words": ["dog"]}, "A DOG barks.", False),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": LEAST}, "bAnana", True),
    ("keywords:letter_frequency", {"letter": "b", "let_frequency": 1, "let_relation": LESS}, "Banana", False),
    ("language:response_language", {"language": "fr"},
     "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans avec ma famille.", True),
    ("language:response_language", {"language": "fr"},
     "Hello, my name is Mary and I have lived in London for ten years with my family.", False),
    ("language:response_language", {"language": "fr"}, "12345 !!!", True),  # nothing to detect: followed
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LEAST}, "One. Two! Three?", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LEAST},
     "Mr. Smith arrived. He sat.", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS}, "One. Two.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\nB\n***\nC", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nA\n***\nB\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\n***\nB", False),
    ("length_constraints:number_words", {"num_words": 3, "relation": LEAST}, "It's fine", True),  # It, s, fine
    ("length_constraints:number_words", {"num_words": 3, "relation": LEAST}, "one two", False),
    ("length_constraints:number_words", {"num_words": 3, "relation": LESS}, "one two", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "Second"},
     'Intro.\n\n"Second, para."\n\nThird.', True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "second"},
     'Intro.\n\n"Second, para."\n\nThird.', False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "third"},
     'Intro.\n\n"Second, para."\n\nThird.', False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. Bye.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nPS Bye.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\np. p. s. more", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* a\n* b\n- c", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* a\n**bold**\n* b", False),
    ("detectable_format:constrained_response", {}, "Well. My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "Yes.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and ** **", False),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nfoo\nSection 2\nbar", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 1},
     "SECTION 1\nfoo", False),  # the splitter is case-sensitive
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, '{"a": 1} and more', False),
    ("detectable_format:title", {}, "<<My Title>>\nbody", True),
    ("detectable_format:title", {}, "<< >>\nbody", False),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem. "}, "write a poem. Roses are red.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Bye. "any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Thanks.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 4, "capital_relation": LEAST},
     "I DON'T like NASA.", True),  # I, DO, N'T, NASA
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": LESS}, "Hello WORLD", False),
    ("change_case:english_capital", {}, "THIS IS A SHORT TEST OF THE ENGLISH LANGUAGE IN CAPITAL LETTERS.", True),
    ("change_case:english_capital", {}, "This is a short test of the English language.", False),
    ("change_case:english_lowercase", {}, "this is a short test of the english language in small letters.", True),
    ("change_case:english_lowercase", {}, "This is a short test of the English language.", False),
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("startend:quotation", {}, ' "Wrapped." ', True),
    ("startend:quotation", {}, '"', False),
    ("startend:quotation", {}, '"Not wrapped.', False),
]


@pytest.mark.parametrize("instruction_id, kwargs, response, expected", CASES)
def test_check(instruction_id, kwargs, response, expected):
    assert CHECKS[instruction_id](response, **kwargs) is expected


def test_every_check_has_a_pass_and_a_fail_case():
    seen = {(i, e) for i, _, _, e in CASES}
    assert {i for i, _ in seen} == set(CHECKS)
    assert all((i, True) in seen and (i, False) in seen for i in CHECKS)


@pytest.mark.parametrize("text, sentences", [
    ("xx,x. xx,x! xx/x. x{x}x?", 4),  # the reference's own test
    ("Dr. Smith met J. K. Rowling in the U.S. today. Then he left.", 2),
    ("Wait... what? Yes... Fine.", 3),  # an ellipsis ends a sentence only before a capital
    ("Steps:\n1. mix\n2. Bake it.", 2),  # "1." before lower case is no end; "2." before "Bake" is
    ("Title\n\nNo full stop", 1),  # newlines alone do not end a sentence
    ('He said "Stop!" Then he ran.', 2),
    ("Hi!! there. Plan B! go.", 4),  # ! and ? always end one, even after an initial
])
def test_split_sentences(text, sentences):
    assert len(split_sentences(text)) == sentences


def test_capital_words_cut_as_nltk_word_tokenize():
    # I DO N'T like NASA 's plan . | IT 'S OK . | CAN NOT -- WELL-KNOWN ( USA ) , "YES" e.g. 'QUOTED'
    text = "I DON'T like NASA's plan. IT'S OK. CANNOT--WELL-KNOWN (USA), \"YES\" 'QUOTED'"
    assert capital_words(text) == ["I", "DO", "N'T", "NASA", "IT", "'S", "OK", "CAN", "NOT", "WELL-KNOWN", "USA",
                                   "YES", "QUOTED"]


def test_loose_variants_are_the_reference_eight():
    assert loose_variants("*a*\nb\n*c*") == ["*a*\nb\n*c*", "a\nb\nc", "b\n*c*", "*a*\nb", "b", "b\nc", "a\nb", "b"]


def row(key, *ids, kwargs=None):
    return {"key": key, "prompt": f"prompt {key}", "instruction_id_list": list(ids),
            "kwargs": kwargs or [{} for _ in ids]}


def test_loose_forgives_a_markdown_first_line_and_asterisks():
    rows = [row(1, "detectable_format:json_format"),
            row(2, "startend:end_checker", kwargs=[{"end_phrase": "Any other questions?"}])]
    result = score_ifeval(rows, ['**JSON output:**\n{"a": 1}', "Done.\n**Any other questions?**"])
    assert [r["follow_strict"] for r in result["rows"]] == [[False], [False]]
    assert [r["follow_loose"] for r in result["rows"]] == [[True], [True]]


def test_metrics_on_three_prompts():
    rows = [row(1, "punctuation:no_comma", "startend:quotation"),
            row(2, "punctuation:no_comma", "detectable_format:title"),
            row(3, "detectable_format:json_format")]
    result = score_ifeval(rows, ['"Hi there"', "a, b", 'Here:\n{"a": 1}'])
    # strict: prompt 1 follows both, 2 neither, 3 fails JSON (loose passes it without the first line)
    assert result["prompt_strict"] == pytest.approx(1 / 3)
    assert result["prompt_loose"] == pytest.approx(2 / 3)
    assert result["inst_strict"] == pytest.approx(2 / 5)
    assert result["inst_loose"] == pytest.approx(3 / 5)
    assert (result["n_prompts"], result["n_instructions"], result["unsupported"]) == (3, 5, [])
    assert result["per_type"] == {
        "detectable_format:json_format": {"n": 1, "strict": 0.0, "loose": 1.0},
        "detectable_format:title": {"n": 1, "strict": 0.0, "loose": 0.0},
        "punctuation:no_comma": {"n": 2, "strict": 0.5, "loose": 0.5},
        "startend:quotation": {"n": 1, "strict": 1.0, "loose": 1.0},
    }
    assert result["rows"][1] == {"key": 2, "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
                                 "follow_strict": [False, False], "follow_loose": [False, False]}


def test_empty_response_follows_nothing():
    result = score_ifeval([row(1, "punctuation:no_comma")], [" \n "])  # no_comma alone would pass it
    assert (result["inst_strict"], result["inst_loose"]) == (0.0, 0.0)


def test_response_count_must_match():
    with pytest.raises(UserError, match="1 responses for 2 prompts"):
        score_ifeval([row(1, "punctuation:no_comma"), row(2, "punctuation:no_comma")], ["x"])


def test_bundled_prompts_load_and_every_id_has_a_check():
    rows = load_ifeval()
    ids = [i for r in rows for i in r["instruction_id_list"]]
    assert (len(rows), len(ids), len(set(ids))) == (541, 834, 25)
    assert set(ids) == set(CHECKS)
    fixed = next(r for r in rows if r["key"] == 2785)
    assert "at least 3 placeholders" in fixed["prompt"]
    assert fixed["kwargs"] == [{"num_highlights": 3}, {"num_placeholders": 3}]


def write(tmp_path, *lines):
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines), encoding="utf-8")
    return str(path)


def error(path):
    with pytest.raises(UserError) as e:
        load_ifeval(path)
    assert "\n" not in str(e.value)
    return str(e.value)


GOOD = row(1, "punctuation:no_comma")


def test_null_kwargs_are_dropped(tmp_path):
    hf = row(2, "length_constraints:number_words", kwargs=[{"num_words": 5, "relation": LESS, "language": None}])
    assert load_ifeval(write(tmp_path, hf))[0]["kwargs"] == [{"num_words": 5, "relation": LESS}]


@pytest.mark.parametrize("bad, message", [
    ({"key": 2, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"]}, "line 3: missing field 'kwargs'"),
    ({**GOOD, "prompt": "  "}, "line 3: field 'prompt' is empty"),
    ({**GOOD, "kwargs": []}, "line 3: field 'kwargs' has 0 entries for 1 instructions"),
    (row(2, "keywords:telepathy"), "unknown IFEval instruction id(s): keywords:telepathy (line 3)"),
    (row(2, "length_constraints:number_words", kwargs=[{"num_words": "ten", "relation": LESS}]),
     "argument 'num_words' must be a whole number >= 0, got \"ten\""),
    (row(2, "length_constraints:number_words", kwargs=[{"num_words": 10, "relation": "at most"}]),
     "argument 'relation' must be one of less than, at least"),
    (row(2, "length_constraints:number_words", kwargs=[{"num_words": 10}]), "missing argument 'relation'"),
    (row(2, "punctuation:no_comma", kwargs=[{"num_words": 10}]), "unexpected argument(s) num_words"),
    (row(2, "keywords:existence", kwargs=[{"keywords": ["(unclosed"]}]), "used as a regular expression"),
    (row(2, "keywords:letter_frequency", kwargs=[{"letter": "ab", "let_frequency": 1, "let_relation": LESS}]),
     "argument 'letter' must be a single letter"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, bad, message):
    path = write(tmp_path, GOOD, "", bad)  # the blank line still counts: the bad row is on line 3
    text = error(path)
    assert text.startswith(path) and message in text


def test_bad_files(tmp_path):
    assert "IFEval file not found" in error(str(tmp_path / "missing.jsonl"))
    assert ":2: not valid JSON" in error(write(tmp_path, GOOD, "{oops"))
    assert "no rows" in error(write(tmp_path, ""))
