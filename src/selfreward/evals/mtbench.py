"""MT-Bench and the Vicuna questions: the model answers, a judge rates each answer 1-10, as FastChat's
single-answer grading does (lm-sys/FastChat, fastchat/llm_judge: gen_model_answer.py, gen_judgment.py).

Questions: the bundled sets (SUITES: MT-Bench, 80 questions of two turns; Vicuna, 80 of one turn), or any
FastChat-format question file {"question_id", "category", "turns": [1 or 2 strings]} with its reference-answer
file {"question_id", "choices": [{"turns": [str, ...]}, ...]}.

Answers: turn 1 is the first question alone; turn 2 is the second question after the model's own turn-1
answer. Decoding is greedy (selfreward.compare.greedy, max_new_tokens from the caller's config); FastChat
samples writing and roleplay at 0.7 and stem and humanities at 0.1, but greedy answers make a rerun give the same
answers and the same score.

Grading: one greedy judgment per answered turn. Turn 1 is graded with single-v1, turn 2 with
single-v1-multi-turn, which shows the whole conversation and asks about the second answer. Questions in
REFERENCE_CATEGORIES are graded against the shipped GPT-4 reference answers with single-math-v1 /
single-math-v1-multi-turn, as FastChat does. The templates are FastChat's text unchanged
(templates/mtbench-<name>.txt: the system prompt, a "<<<USER>>>" line, the user prompt; copied from
fastchat/llm_judge/data/judge_prompts.jsonl @ 0e6d3e4beaab66f4d3f93db72541a4abab8af28d, Apache-2.0). The texts
put into them are untrusted: neutralised as the project's own judge prompt is (see selfreward.judge), and
every "[[" in them broken (see `fill`).

Rating: FastChat's parser, the first "[[x]]" in the judge's output, else the first "[x]". None when there is
neither or the number is outside 1-10 (FastChat writes -1 there; here a failure is never a number). Only the
judge's output is parsed, never the answer it grades.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from importlib import resources
from pathlib import Path
from typing import Any

from selfreward.backends import Generator, Message, Sampling
from selfreward.errors import UserError
from selfreward.judges import templates
from selfreward.records import check_fields, read_jsonl

SUITES = {"mtbench": ("mtbench_question.jsonl", "mtbench_reference_gpt-4.jsonl"),
          "vicuna": ("vicuna_question.jsonl", "vicuna_reference_gpt-4.jsonl")}
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")  # FastChat's NEED_REF_CATS, less arena-hard-200
MIN_RATING, MAX_RATING = 1.0, 10.0
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
# The judgment ends at its first "[[N]]" rating (N 1-10): `parse_rating` reads the first "[[x]]", so the text
# after it never counted. A rating written otherwise ("[[7.5]]") stops nothing and is read as before.
RATING_STOP = tuple(f"[[{n}]]" for n in range(int(MIN_RATING), int(MAX_RATING) + 1))


def load_suite(name: str) -> list[dict[str, Any]]:
    """A bundled question set with its reference answers."""
    if name not in SUITES:
        raise UserError(f"unknown question suite '{name}'; choose one of: {', '.join(SUITES)}")
    bench = resources.files("selfreward.data").joinpath("bench")
    questions, references = (bench.joinpath(f) for f in SUITES[name])
    with resources.as_file(questions) as q, resources.as_file(references) as r:
        return read_bench(q, r)


def read_bench(questions: Path, references: Path | None = None) -> list[dict[str, Any]]:
    """Rows {"question_id", "category", "turns", "reference": [str, ...] or None}; the reference is kept only
    for the categories graded against one, and every question there must have one."""
    refs = _read_references(Path(references)) if references is not None else {}
    rows = read_jsonl(Path(questions))
    if not rows:
        raise UserError(f"{questions}: no questions; give one JSON object per line")
    out, seen = [], set()
    for i, row in enumerate(rows, 1):
        where = f"{questions} row {i}"
        check_fields(row, {"question_id": (int, str), "category": str, "turns": list}, where)
        _check_turns(row["turns"], f"{where}: field 'turns'")
        qid, category = row["question_id"], row["category"]
        if qid in seen:
            raise UserError(f"{where}: question_id {qid} appears twice; give each question its own id")
        seen.add(qid)
        reference = refs.get(qid) if category in REFERENCE_CATEGORIES else None
        if category in REFERENCE_CATEGORIES and (reference is None or len(reference) < len(row["turns"])):
            raise UserError(f"{where}: question {qid} (category '{category}') is graded against a reference "
                            f"answer for each of its turns, and {references or 'no reference file'} lacks one")
        out.append({"question_id": qid, "category": category, "turns": row["turns"], "reference": reference})
    return out


def answer_mtbench(gen: Generator, questions: list[dict[str, Any]], sampling: Sampling,
                   desc: str = "answer") -> list[dict[str, Any]]:
    """Each question with "answers", one per turn; turn k is asked after the model's own answers to turns < k."""
    if sampling.n != 1:
        raise ValueError("answer_mtbench takes one answer per turn (sampling.n == 1)")
    chats: list[list[Message]] = [[] for _ in questions]
    for turn in range(max((len(q["turns"]) for q in questions), default=0)):
        live = [i for i, q in enumerate(questions) if turn < len(q["turns"])]
        for i in live:
            chats[i].append({"role": "user", "content": questions[i]["turns"][turn]})
        outs = gen.generate([list(chats[i]) for i in live], sampling, desc=f"{desc} turn {turn + 1}")
        for i, out in zip(live, outs):
            chats[i].append({"role": "assistant", "content": out[0].strip()})
    return [{**q, "answers": [m["content"] for m in chat if m["role"] == "assistant"]}
            for q, chat in zip(questions, chats)]


def grade_single(judge_gen: Generator, items: list[dict[str, Any]], sampling: Sampling,
                 desc: str = "grade") -> list[dict[str, Any]]:
    """One row per answered turn: the template used, the judge's raw text and its rating (None when unparsed)."""
    slots = [(item, turn) for item in items for turn in range(len(item["answers"]))]
    prompts = [judge_prompt(item, turn) for item, turn in slots]
    outs = judge_gen.generate([messages for _, messages in prompts], dataclasses.replace(sampling, stop=RATING_STOP),
                              desc=desc)
    return [{"question_id": item["question_id"], "category": item["category"], "turn": turn + 1, "template": name,
             "question": item["turns"][turn], "answer": item["answers"][turn],
             "answer_chars": len(item["answers"][turn]), "judgment": out[0], "rating": parse_rating(out[0])}
            for (item, turn), (name, _), out in zip(slots, prompts, outs)]


def run_single(gen: Generator, judge_gen: Generator, questions: list[dict[str, Any]], answer_sampling: Sampling,
               judge_sampling: Sampling, desc: str = "") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer, grade, summarise: (one row per graded turn, summary)."""
    items = answer_mtbench(gen, questions, answer_sampling, desc=f"{desc} answer".strip())
    rows = grade_single(judge_gen, items, judge_sampling, desc=f"{desc} grade".strip())
    return rows, summarise_single(rows)


def judge_prompt(item: dict[str, Any], turn: int) -> tuple[str, list[Message]]:
    """(FastChat template name, the judge's messages) for one answered turn (0-based) of a question."""
    reference = item["reference"] if item["category"] in REFERENCE_CATEGORIES else None
    name = ("single-math-v1" if reference else "single-v1") + ("-multi-turn" if turn else "")
    if turn == 0:
        values = {"question": item["turns"][0], "answer": item["answers"][0]}
        values |= {"ref_answer_1": reference[0]} if reference else {}
    else:
        values = {f"{field}_{k + 1}": texts[k] for k in range(2)
                  for field, texts in (("question", item["turns"]), ("answer", item["answers"]),
                                       ("ref_answer", reference)) if texts}
    # Rendered whole, so the delimiters escaped inside the texts include the system prompt's "[[rating]]".
    system, user = templates.split_system(templates.render(templates.load(f"mtbench-{name}"), values))
    return name, [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_rating(judgment: str) -> float | None:
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    if match is None:
        return None
    value = float(match.group(1))
    return value if MIN_RATING <= value <= MAX_RATING else None


def summarise_single(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """score: the mean rating over the parsed judgments of every turn (FastChat's MT-Bench score); the same per
    turn and per category with how many were rated; parse failures; the mean answer length in characters."""
    rated = [r["rating"] for r in rows if r["rating"] is not None]
    return {"score": _mean(rated), "judgments": len(rows), "rated": len(rated),
            "parse_failures": len(rows) - len(rated),
            "parse_failure_rate": (len(rows) - len(rated)) / len(rows) if rows else None,
            "per_turn": _grouped(rows, "turn"), "per_category": _grouped(rows, "category"),
            "mean_answer_chars": _mean([r["answer_chars"] for r in rows])}


def _grouped(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[float | None]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r["rating"])
    return {k: {"score": _mean([x for x in v if x is not None]), "rated": sum(x is not None for x in v),
                "judgments": len(v)} for k, v in groups.items()}


def _read_references(path: Path) -> dict[int | str, list[str]]:
    refs = {}
    for i, row in enumerate(read_jsonl(path), 1):
        where = f"{path} row {i}"
        check_fields(row, {"question_id": (int, str), "choices": list}, where)
        if not row["choices"] or not isinstance(row["choices"][0], dict) or "turns" not in row["choices"][0]:
            raise UserError(f"{where}: field 'choices' must hold an object with 'turns' (FastChat's answer format)")
        _check_turns(row["choices"][0]["turns"], f"{where}: field 'choices[0].turns'")
        refs[row["question_id"]] = row["choices"][0]["turns"]
    return refs


def _check_turns(turns: list, where: str) -> None:
    if not 1 <= len(turns) <= 2 or not all(isinstance(t, str) and t.strip() for t in turns):
        raise UserError(f"{where} must be a list of 1 or 2 non-empty strings (one per turn)")


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None
