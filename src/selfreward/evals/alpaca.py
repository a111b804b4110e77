"""AlpacaEval-style win rate: the model answers each instruction, a judge compares its answer with the reference
output of the file in both orders (selfreward.compare), and the outcomes are tallied from the model's view.

AlpacaEval data is CC BY-NC 4.0 and never bundled: the reference file is given by path. Accepted: a
`model_outputs.json` of tatsu-lab/alpaca_eval (a JSON array) or the same rows as JSONL, each with "instruction"
and "output" (and optionally "dataset", "generator").

Answers and judgments are greedy (selfreward.compare.greedy). A judge that likes length makes a verbose
model look good, so the summary has both sides' mean lengths (characters) and two length-aware figures:
- not_longer: the tally over the pairs where the model's answer is not longer than the reference.
- lc_win_rate: length-controlled in the spirit of AlpacaEval 2.0 (Dubois et al. 2024): fit
  logit P(model preferred) = a + b * tanh((len_model - len_reference) / sd) over the pairs (sd: the population
  standard deviation of the length differences) and report sigmoid(a), the preference predicted for an answer
  as long as the reference. AlpacaEval's per-instruction difficulty term needs many models' results and is left
  out. A weak Gaussian prior on b (LENGTH_PRIOR, one pseudo-observation) keeps the fit finite when length alone
  separates wins from losses. As in AlpacaEval a tie counts half, so it compares with tie_half_win_rate.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit

from selfreward.backends import Generator, Sampling
from selfreward.compare import pairwise_verdicts, summarize, tally
from selfreward.errors import UserError
from selfreward.judges.agreement import limit_groups
from selfreward.records import check_fields, read_jsonl

LENGTH_PRIOR = 1.0  # precision of the Gaussian prior on the length slope b
PREFERENCE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def load_alpaca(path: str | Path) -> list[dict[str, Any]]:
    """Rows {"dataset", "instruction", "reference", "generator"} of an AlpacaEval model-outputs file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"AlpacaEval reference file not found: {path} (give the path of a model_outputs.json or "
                        ".jsonl file; AlpacaEval data is CC BY-NC 4.0 and not shipped)")
    rows = _read_array(path) if path.suffix == ".json" else read_jsonl(path)
    if not rows:
        raise UserError(f"{path}: no rows; an AlpacaEval file holds objects with 'instruction' and 'output'")
    for i, row in enumerate(rows, 1):
        where = f"{path} row {i}"
        check_fields(row, {"instruction": str, "output": str}, where)
        if not row["instruction"].strip():
            raise UserError(f"{where}: field 'instruction' is empty; fill it in or remove the row")
    return [{"dataset": str(row.get("dataset", "")), "instruction": row["instruction"], "reference": row["output"],
             "generator": str(row.get("generator", ""))} for row in rows]


def run_alpaca(gen: Generator, judge_gen: Generator, reference_path: str | Path, answer_sampling: Sampling,
               judge_sampling: Sampling, max_prompts: int | None = None, seed: int = 0,
               desc: str = "alpaca") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one row per instruction, summary) over a seeded subset of max_prompts instructions (None: all)."""
    refs = limit_groups(load_alpaca(reference_path), max_prompts, seed)
    outputs = answer_alpaca(gen, refs, answer_sampling, desc=f"{desc} answer")
    return judge_alpaca(judge_gen, refs, outputs, judge_sampling, seed=seed, desc=f"{desc} compare")


def answer_alpaca(gen: Generator, refs: list[dict[str, Any]], sampling: Sampling, desc: str = "answer") -> list[str]:
    outs = gen.generate([[{"role": "user", "content": r["instruction"]}] for r in refs], sampling, desc=desc)
    return [out[0].strip() for out in outs]


def judge_alpaca(judge_gen: Generator, refs: list[dict[str, Any]], outputs: list[str], sampling: Sampling,
                 seed: int = 0, desc: str = "compare") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The model's outputs against the references: A is the model, B the reference."""
    verdicts = pairwise_verdicts(judge_gen, [r["instruction"] for r in refs], outputs,
                                 [r["reference"] for r in refs], sampling, desc=desc)
    rows = [{"dataset": r["dataset"], "reference_generator": r["generator"], **v, "len_model": len(out),
             "len_reference": len(r["reference"])} for r, out, v in zip(refs, outputs, verdicts)]
    return rows, summarise_alpaca(rows, seed=seed)


def summarise_alpaca(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """compare.summarize of the rows (the tally with its intervals, unparseable verdicts, verdicts by slot), with
    tie_half_win_rate, lc_win_rate, the mean lengths of both sides, and not_longer: the tally over the pairs
    where the model's answer is not longer than the reference (None when there are none)."""
    outcomes = [r["outcome"] for r in rows]
    len_model, len_ref = [r["len_model"] for r in rows], [r["len_reference"] for r in rows]
    short = [o for o, a, b in zip(outcomes, len_model, len_ref) if a <= b]
    result = {k: v for k, v in summarize(rows, seed=seed).items() if k not in ("mean_len_a", "mean_len_b")}
    return {**result, "tie_half_win_rate": _mean([PREFERENCE[o] for o in outcomes]),
            "lc_win_rate": length_controlled_win_rate(outcomes, len_model, len_ref),
            "mean_len_model": _mean(len_model), "mean_len_reference": _mean(len_ref),
            "not_longer": tally(short, seed=seed) if short else None}


def length_controlled_win_rate(outcomes: list[str], len_model: list[int], len_ref: list[int]) -> float | None:
    """sigmoid(a) of the fit described in the module docstring; None without outcomes."""
    y = np.array([PREFERENCE[o] for o in outcomes])
    if len(y) == 0:
        return None
    if y.min() == y.max() and y[0] != 0.5:
        return float(y[0])  # all wins or all losses: the intercept is infinite, the rate is exact
    diff = np.array(len_model, dtype=float) - np.array(len_ref, dtype=float)
    sd = diff.std()
    t = np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = w[0] + w[1] * t
        residual = expit(z) - y
        value = np.sum(np.logaddexp(0.0, z) - y * z) + LENGTH_PRIOR * w[1] ** 2 / 2
        return value, np.array([residual.sum(), residual @ t + LENGTH_PRIOR * w[1]])

    fit = minimize(loss, x0=np.array([logit(y.mean()), 0.0]), jac=True, method="BFGS", options={"gtol": 1e-9})
    return float(expit(fit.x[0]))


def _read_array(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); give a JSON array of objects, "
                        "or JSONL with a .jsonl name") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: expected a JSON array of objects (AlpacaEval's model_outputs.json format)")
    return rows


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None
