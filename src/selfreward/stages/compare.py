"""Stage compare (M_t, t >= 2): M_t head to head against M_{t-1}, and from t = 3 also against M1, on the prompts
iteration 1 held back from training.

The answers are the eval stages' (eval/answers-M<s>.heldout.jsonl, greedy). The judge is judge.model when set,
else the older model of each pair: a model trained to please its own judge would favour itself, so a win
reported for the newer model is a conservative one. Each pair is decided twice with the order swapped; a win
needs both orders (selfreward.compare). Outputs: eval/compare-M<t>-vs-M<s>.json with .verdicts.jsonl.
"""

from __future__ import annotations

from selfreward.compare import greedy, pairwise_verdicts, summarize, table
from selfreward.config import RunConfig
from selfreward.errors import UserError
from selfreward.records import read_jsonl, write_json, write_jsonl
from selfreward.rundir import RunDir
from selfreward.stages import judge_view, model_for, open_generator
from selfreward.stages.evaluate import heldout_path


def run(rd: RunDir, cfg: RunConfig, t: int) -> dict:
    new = _answers(rd, t)
    stats = {}
    for s in sorted({t - 1, 1}, reverse=True):
        old = _answers(rd, s)
        if [a["id"] for a in old] != [a["id"] for a in new]:
            raise UserError(f"{heldout_path(rd, s)} and {heldout_path(rd, t)} answer different prompts; redo the "
                            f"eval stages (selfreward run --redo)")
        judge_name = cfg.judge.model or f"M{s}"
        judge = open_generator(judge_view(cfg), model_for(cfg, rd, s, cfg.judge.model))
        try:
            rows = pairwise_verdicts(judge, [a["instruction"] for a in new], [a["answer"] for a in new],
                                     [a["answer"] for a in old], greedy(cfg.judge.max_new_tokens, cfg.seed),
                                     desc=f"compare M{t} vs M{s} (judge {judge_name}, both orders)")
        finally:
            judge.close()
        result = {"a": f"M{t}", "b": f"M{s}", "judge": judge_name, "prompts": "iteration 1, held back",
                  **summarize(rows, cfg.seed)}
        write_jsonl(rd.eval_dir / f"compare-M{t}-vs-M{s}.verdicts.jsonl",
                    [{"id": a["id"], **r} for a, r in zip(new, rows)])
        write_json(rd.eval_dir / f"compare-M{t}-vs-M{s}.json", result)
        print(table(f"M{t} (A) vs M{s} (B), judge {judge_name}, {len(rows)} prompts", result), flush=True)
        stats[f"vs_M{s}"] = f"{result['wins']}/{result['ties']}/{result['losses']}"  # wins/ties/losses of M_t
    return stats


def _answers(rd: RunDir, t: int) -> list[dict]:
    path = heldout_path(rd, t)
    if not path.is_file():
        raise UserError(f"{path} is missing: the eval stage of M{t} writes it; run selfreward run to finish it")
    return read_jsonl(path)
