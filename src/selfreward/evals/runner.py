"""A model on the benchmark suites of eval.suites, and its answers to held-back prompts: the one implementation
behind `selfreward eval` and the eval stage of a run.

Answers are greedy (selfreward.compare.greedy) up to eval.max_new_tokens, so a re-run gives the same numbers.
Suites that need a judge (mtbench, vicuna, alpaca) use the judge given (eval.judge, else judge.model, in a run:
selfreward.compare.eval_judge), else the model itself. Outputs in `out`:
ifeval-<label>.json (+ .responses.jsonl), suite-<name>-<label>.json (+ .rows.jsonl) and
answers-<label>.heldout.jsonl.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from selfreward.backends import Generator, Sampling, open_generator
from selfreward.compare import answer, greedy, mean_len
from selfreward.config import RunConfig
from selfreward.evals import alpaca, mtbench
from selfreward.evals.ifeval import load_ifeval, score_ifeval
from selfreward.judges.agreement import limit_groups
from selfreward.records import write_json, write_jsonl

JUDGED = ("mtbench", "vicuna", "alpaca")


def evaluate_model(cfg: RunConfig, model: str, label: str, out: Path, heldout: list[dict] | None = None,
                   judge: str | None = None, opener: Callable[..., Generator] = open_generator,
                   judge_cfg: RunConfig | None = None, judge_label: str | None = None) -> dict:
    """cfg.eval.suites on `model`, plus its answers to `heldout` ({id, instruction} rows) when given. The judged
    suites are graded by `judge` (a path, or a name a server serves; opened with `judge_cfg`, default cfg, and
    named `judge_label` in the results), else by the model itself."""
    sampling = greedy(cfg.eval.max_new_tokens, cfg.seed)
    questions = {name: _questions(cfg, name) for name in cfg.eval.suites}  # bad files fail before a model loads
    stats: dict = {}
    answered: dict = {}
    gen = opener(cfg, model, purpose=f"the evaluation of {label}")
    try:
        if heldout is not None:
            stats.update(_heldout(cfg, label, out, gen, heldout))
        if "ifeval" in questions:
            stats.update(_ifeval(cfg, label, out, gen, sampling, questions["ifeval"]))
        answered = {name: _answer(name, gen, sampling, rows) for name, rows in questions.items() if name in JUDGED}
        if answered and judge is None:
            stats.update(_grade(cfg, label, out, gen, answered, judge_name=label))
    finally:
        gen.close()
    if answered and judge is not None:
        judge_gen = opener(judge_cfg or cfg, judge, role="judge", purpose=f"the evaluation of {label}")
        try:
            stats.update(_grade(cfg, label, out, judge_gen, answered, judge_name=judge_label or judge))
        finally:
            judge_gen.close()
    return stats


def _heldout(cfg: RunConfig, label: str, out: Path, gen: Generator, rows: list[dict]) -> dict:
    answers = answer(gen, rows, label, cfg.eval.max_new_tokens, cfg.seed, desc=f"eval {label}: held-back prompts")
    write_jsonl(out / f"answers-{label}.heldout.jsonl", answers)
    return {"heldout_answers": len(answers), "heldout_mean_chars": mean_len([a["answer"] for a in answers])}


def _ifeval(cfg: RunConfig, label: str, out: Path, gen: Generator, sampling: Sampling, rows: list[dict]) -> dict:
    outs = gen.generate([[{"role": "user", "content": r["prompt"]}] for r in rows], sampling,
                        desc=f"eval {label}: ifeval")
    responses = [o[0] for o in outs]
    result = score_ifeval(rows, responses)
    per_row = result.pop("rows")
    write_jsonl(out / f"ifeval-{label}.responses.jsonl",
                [{**r, "prompt": row["prompt"], "response": resp} for r, row, resp in zip(per_row, rows, responses)])
    write_json(out / f"ifeval-{label}.json", {"model": label, "iteration": _iteration(label), **result,
                                              "mean_length_chars": mean_len(responses)})
    print(f"IFEval {label} ({result['n_prompts']} prompts): prompt-level strict {result['prompt_strict']:.3f}, "
          f"loose {result['prompt_loose']:.3f}; instruction-level strict {result['inst_strict']:.3f}, "
          f"loose {result['inst_loose']:.3f}", flush=True)
    return {k: round(result[k], 4) for k in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose")}


def _questions(cfg: RunConfig, name: str) -> list[dict]:
    """A fixed seeded subset (eval.max_prompts) of a suite's questions."""
    if name == "ifeval":
        rows = load_ifeval()
    elif name == "alpaca":
        rows = alpaca.load_alpaca(cfg.eval.alpaca_reference)
    else:
        rows = mtbench.load_suite(name)
    return limit_groups(rows, cfg.eval.max_prompts, cfg.seed)


def _answer(name: str, gen: Generator, sampling: Sampling, rows: list[dict]):
    """The suite's questions with the model's answers; graded later, perhaps by another model."""
    if name == "alpaca":
        return rows, alpaca.answer_alpaca(gen, rows, sampling, desc="eval: alpaca answers")
    return mtbench.answer_mtbench(gen, rows, sampling, desc=f"eval: {name} answers")


def _grade(cfg: RunConfig, label: str, out: Path, judge: Generator, answered: dict, judge_name: str) -> dict:
    sampling = greedy(cfg.judge.max_new_tokens, cfg.seed)
    stats = {}
    for name, got in answered.items():
        if name == "alpaca":
            rows, summary = alpaca.judge_alpaca(judge, *got, sampling, seed=cfg.seed, desc="eval: alpaca judge")
            summary = {"score": summary["tie_half_win_rate"], "score_is": "win rate against the reference, ties "
                       "count half", **summary, "reference": cfg.eval.alpaca_reference}
        else:
            rows = mtbench.grade_single(judge, got, sampling, desc=f"eval: {name} grades")
            summary = {**mtbench.summarise_single(rows), "score_is": "mean 1-10 rating over rated turns"}
        write_jsonl(out / f"suite-{name}-{label}.rows.jsonl", rows)
        write_json(out / f"suite-{name}-{label}.json", {"model": label, "iteration": _iteration(label), "suite": name,
                                                        "judge": judge_name, **summary})
        print(f"{name} {label} (judge {judge_name}): score {summary['score']}", flush=True)
        stats[f"{name}_score"] = None if summary["score"] is None else round(summary["score"], 4)
    return stats


def _iteration(label: str) -> int | None:
    """t of a run's model M<t>; None for a model outside a run."""
    return int(label[1:]) if label[:1] == "M" and label[1:].isdigit() else None

