"""Command line: `selfreward run` for the whole loop, one command per stage, and `status`."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from selfreward.config import load_config
from selfreward.errors import UserError
from selfreward.rundir import RunDir, Stage, previous

STAGE_COMMANDS = ["sft", "gen-prompts", "sample", "judge", "pairs", "dpo"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfreward", description="Self-Rewarding Language Models on any HF causal LM.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="SFT, then T self-rewarding iterations; resumes an existing run directory")
    r.add_argument("--config", help="recipe YAML, or the name of a shipped recipe (tiny-cpu, 1gpu-lora, ...)")
    r.add_argument("--run-dir", help="default: runs/<recipe name>")
    r.add_argument("--redo", action="store_true", help="recompute finished stages whose settings changed")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. sample.n=4 iterations=3")
    for name in STAGE_COMMANDS:
        s = sub.add_parser(name, help=f"run (or re-run) the {name} stage of a run directory")
        s.add_argument("run_dir")
        if name != "sft":
            s.add_argument("--iteration", "-t", type=int, required=True)
        s.add_argument("overrides", nargs="*", metavar="key=value")
    st = sub.add_parser("status", help="stages done, counts, scores and lengths per iteration")
    st.add_argument("run_dir")
    rp = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained), report.md and results.json")
    rp.add_argument("run_dir")
    ej = sub.add_parser("eval-judge", help="a model's judge against human rankings, beside the length and "
                                           "random baselines")
    ej.add_argument("--model", required=True, help="default, a Hugging Face id, or a local model directory")
    ej.add_argument("--data", action="append", help="builtin (the shipped EFT eval split), or a JSONL file: "
                    "ranked responses (prompt, response, human_score|rank), LLMBar or Auto-J pairs; repeatable")
    ej.add_argument("--mode", choices=["sample", "expected"], help="judge.mode (default: the config's)")
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
    _add_compare(sub)
    _add_eval(sub)
    _add_bench(sub)
    return p


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", help="a model on offline benchmarks: IFEval (checked by rule), MT-Bench and Vicuna "
                                    "(rated 1-10 by a judge), AlpacaEval-style win rate against reference outputs")
    e.add_argument("--model", required=True, help="default, a Hugging Face id, or a local model directory")
    e.add_argument("--suite", default="ifeval", help="comma-separated: ifeval, mtbench, vicuna, alpaca "
                                                      "(default: ifeval)")
    e.add_argument("--judge", help="rates mtbench/vicuna/alpaca: a model id or directory, or openai:NAME with "
                                   "judge.base_url=URL; default: the model itself")
    e.add_argument("--alpaca-reference", help="AlpacaEval outputs file (instruction, output), e.g. "
                                              "gpt4_1106_preview.model_outputs.json; CC BY-NC 4.0, so not shipped")
    e.add_argument("--max-prompts", type=int, help="a fixed seeded subset of each suite")
    e.add_argument("--config", help="recipe YAML or shipped recipe name, for eval.*, judge.* and generation.*")
    e.add_argument("--out", help="default: evals/<model name>")
    e.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. eval.max_new_tokens=1024")


def _add_bench(sub) -> None:
    from selfreward.bench import BenchSettings

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
    c.add_argument("--judge", default="b",
                   help="b (default: MODEL_B, the baseline, judges), a (MODEL_A judges), a model id or directory, "
                        "or openai:NAME for an OpenAI-compatible server (judge.base_url=URL, key in the variable "
                        "named by judge.api_key_env, default OPENAI_API_KEY)")
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
    try:
        return COMMANDS.get(ns.command, _stage)(ns)
    except UserError as e:
        print(f"selfreward: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfreward: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130


def _run(ns) -> int:
    from selfreward import pipeline
    from selfreward.report import write_report
    from selfreward.summary import write_summary

    recipe = _recipe_path(ns.config) if ns.config else None
    run_dir = Path(ns.run_dir or f"runs/{recipe.stem if recipe else 'default'}")
    rd = RunDir(run_dir)
    if recipe is None and rd.config_path.is_file():
        recipe = rd.config_path
    cfg = load_config(recipe, ns.overrides)
    _check_inputs(cfg)
    pipeline.check_changes(rd, cfg, ns.redo)
    pipeline.prepare(rd, cfg, pipeline.argv())
    pipeline.run_all(rd, cfg)
    print("\n" + write_summary(rd, cfg.iterations))
    print(f"\nReport: {write_report(rd.root)} (results.json beside it)")
    print(f"\nModels: M1 = {rd.policy(1)}" + "".join(f", M{t + 1} = {rd.policy(t + 1)}"
                                                    for t in range(1, cfg.iterations + 1)))
    return 0


def _stage(ns) -> int:
    from selfreward import pipeline

    rd = RunDir(ns.run_dir)
    cfg = pipeline.load_run_config(rd)
    if ns.overrides:
        cfg = load_config(rd.config_path, ns.overrides)
        pipeline.prepare(rd, cfg, pipeline.argv())
    iteration = getattr(ns, "iteration", 0)
    if ns.command != "sft" and not 1 <= iteration <= cfg.iterations:
        raise UserError(f"--iteration must be between 1 and {cfg.iterations} (iterations in {rd.config_path})")
    stats = pipeline.execute(rd, cfg, Stage(ns.command, iteration))
    print(f"{Stage(ns.command, iteration)} done: {stats}")
    return 0


def _status(ns) -> int:
    from selfreward import pipeline
    from selfreward.summary import write_summary

    rd = RunDir(ns.run_dir)
    cfg = pipeline.load_run_config(rd)
    for stage in pipeline.run_plan(cfg):
        print(f"{str(stage):28s} {rd.state(stage, cfg, previous(stage))}")
    print("\n" + write_summary(rd, cfg.iterations))
    return 0


def _report(ns) -> int:
    from selfreward.report import write_report

    print(f"Report: {write_report(Path(ns.run_dir))} (numbers in {Path(ns.run_dir) / 'results.json'})")
    return 0


def _path_or_shipped(name: str, shipped_name: str) -> Path | None:
    """A file given by path, else one shipped beside the recipes, else None."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = resources.files("selfreward.recipes").joinpath(shipped_name)
    return Path(str(shipped)) if shipped.is_file() else None


def _recipe_path(name: str) -> Path:
    path = _path_or_shipped(name, f"{name.removesuffix('.yaml')}.yaml")
    if path is None:
        raise UserError(f"config file not found: {name} (a path, or a shipped recipe: "
                        f"{', '.join(sorted(_shipped_recipes()))})")
    return path


def _shipped_recipes() -> list[str]:
    return [f.name.removesuffix(".yaml") for f in resources.files("selfreward.recipes").iterdir()
            if f.name.endswith(".yaml")]


def _check_inputs(cfg) -> None:
    """Fail in the first second on a bad path or data row, not after an hour of training."""
    from selfreward.data import load_eft, load_ift
    from selfreward.judge import load_template
    from selfreward.models import resolve_model

    if cfg.accelerate_config:
        cfg.accelerate_config = _accelerate_config_path(cfg.accelerate_config)
    load_template(cfg.judge.template)
    load_ift(cfg.data.ift)
    load_eft(cfg.data.eft_train, "eft_train")
    if cfg.judge_eval.max_prompts != 0:
        from selfreward.data.judge_sets import load_judge_set

        load_judge_set(cfg.data.eft_eval)
    resolve_model(cfg.model)


def _accelerate_config_path(name: str) -> str:
    path = _path_or_shipped(name, name)
    if path is None:
        raise UserError(f"accelerate config not found: {name} (accelerate_config)")
    return str(path)


def _eval_judge(ns) -> int:
    from selfreward.config import ModelConfig
    from selfreward.data.judge_sets import load_judge_set
    from selfreward.judge import load_template
    from selfreward.judge_eval import evaluate, limit_groups, table
    from selfreward.models import resolve_model
    from selfreward.records import write_json, write_jsonl
    from selfreward.stages import open_generator

    overrides = list(ns.overrides) + [f"model.name={ns.model}"] + ([f"judge.mode={ns.mode}"] if ns.mode else [])
    cfg = load_config(_recipe_path(ns.config) if ns.config else None, overrides)
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    template = load_template(cfg.judge.template)
    sets = [(spec, *load_judge_set(spec)) for spec in ns.data or ["builtin"]]  # every file checked before work
    model = resolve_model(ModelConfig(name=ns.model, cache_dir=cfg.model.cache_dir,
                                      trust_remote_code=cfg.model.trust_remote_code))
    out = Path(ns.out or f"judge-evals/{_slug(ns.model)}")
    gen = open_generator(cfg, model)
    try:
        for spec, groups, notes in sets:
            groups = limit_groups(groups, ns.max_prompts, cfg.seed)
            name = "eft_eval" if spec == "builtin" else Path(spec).stem
            rows, result = evaluate(gen, template, groups, cfg.judge, cfg.seed, desc=f"eval-judge {name}")
            write_jsonl(out / f"{name}.{cfg.judge.mode}.judgments.jsonl", rows)
            write_json(out / f"{name}.{cfg.judge.mode}.json", {"model": ns.model, "path": model, "data": spec,
                                                               "mode": cfg.judge.mode, "notes": notes, **result})
            print(f"\n{name}: {len(groups)} prompts, {sum(len(g['responses']) for g in groups)} responses"
                  + "".join(f"; {n}" for n in notes))
            print(table(f"{ns.model} ({cfg.judge.mode})", result), flush=True)
    finally:
        gen.close()
    print(f"\nJudgments and metrics in {out}/")
    return 0


def _build_eft(ns) -> int:
    from selfreward import pipeline
    from selfreward.data.judge_sets import load_judge_set
    from selfreward.judge_eval import limit_groups
    from selfreward.stages.build_eft import run_build

    cfg = load_config(_recipe_path(ns.config) if ns.config else None, ns.overrides)
    if not 0 <= ns.eval_fraction < 1:
        raise UserError(f"--eval-fraction must be in [0, 1), got {ns.eval_fraction}")
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    groups, notes = load_judge_set(ns.data)
    groups = limit_groups(groups, ns.max_prompts, cfg.seed)
    if not ns.model:
        _check_inputs(cfg)
    print(f"{ns.data}: {len(groups)} prompts, {sum(len(g['responses']) for g in groups)} responses"
          + "".join(f"; {n}" for n in notes), flush=True)
    stats = run_build(cfg, groups, Path(ns.out), ns.model, ns.eval_fraction, pipeline.argv())
    print(json.dumps(stats, indent=1))
    print(f"\nEFT data in {ns.out}/eft_train.jsonl and {ns.out}/eft_eval.jsonl; train on it with "
          f"data.eft_train={ns.out}/eft_train.jsonl")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/").replace("/", "__"))[-80:]


def _compare(ns) -> int:
    from selfreward.compare import resolve_judge, run_compare, table
    from selfreward.evals.prompts import load_prompt_set
    from selfreward.judge_eval import limit_groups

    cfg = load_config(_recipe_path(ns.config) if ns.config else None, ns.overrides)
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    resolve_judge(ns.judge)
    rows = limit_groups(load_prompt_set(ns.prompts), ns.max_prompts, cfg.seed)
    out = Path(ns.out or f"compare/{_slug(ns.model_a)}-vs-{_slug(ns.model_b)}")
    later = sum(r["later_turns"] > 0 for r in rows)
    print(f"{ns.prompts}: {len(rows)} prompts" + (f"; {later} with later turns, only the first is asked" if later
                                                  else ""))
    print(f"A = {ns.model_a}\nB = {ns.model_b}\njudge = {_judge_label(ns)}, both orders; greedy answers up to "
          f"{cfg.sample.max_new_tokens} tokens", flush=True)
    result = run_compare(cfg, {"a": ns.model_a, "b": ns.model_b}, ns.judge, ns.prompts, rows, out)
    print("\n" + table(f"A vs B on {ns.prompts} ({result['n']} prompts), judge {result['judge']}", result))
    print(f"\nAnswers, verdicts (raw judge texts) and compare.json in {out}/")
    return 0


def _eval(ns) -> int:
    from selfreward.compare import model_path, resolve_judge
    from selfreward.stages import judge_view
    from selfreward.stages.evaluate import evaluate_model

    suites = [x.strip() for x in ns.suite.split(",") if x.strip()]
    overrides = [f"eval.suites=[{','.join(suites)}]"]
    overrides += [f"eval.max_prompts={ns.max_prompts}"] if ns.max_prompts is not None else []
    overrides += [f"eval.alpaca_reference={ns.alpaca_reference}"] if ns.alpaca_reference else []
    if ns.judge:
        kind, name = resolve_judge(ns.judge)
        overrides += [f"judge.model={name}"] + (["judge.backend=openai"] if kind == "openai" else [])
    cfg = load_config(_recipe_path(ns.config) if ns.config else None, list(ns.overrides) + overrides)
    if not suites:
        raise UserError("--suite is empty; name one or more of: ifeval, mtbench, vicuna, alpaca")
    path = model_path(cfg, ns.model)
    judge = model_path(judge_view(cfg), cfg.judge.model) if cfg.judge.model else None
    out = Path(ns.out or f"evals/{_slug(ns.model)}")
    print(f"model = {ns.model}\nsuites = {', '.join(suites)}" + (f"\njudge = {cfg.judge.model or 'the model itself'}"
          if set(suites) - {"ifeval"} else "") + f"\ngreedy answers up to {cfg.eval.max_new_tokens} tokens", flush=True)
    stats = evaluate_model(cfg, path, _slug(ns.model.rstrip("/").rsplit("/", 1)[-1]), out, judge=judge)
    print("\n" + "\n".join(f"{k:14s} {v}" for k, v in stats.items()))
    print(f"\nAnswers, raw judgments and results (JSON) in {out}/")
    return 0


def _judge_label(ns) -> str:
    return {"a": f"MODEL_A ({ns.model_a})", "b": f"MODEL_B ({ns.model_b})"}.get(ns.judge, ns.judge)


def _bench(ns) -> int:
    from selfreward.bench import BenchSettings, run, table
    from selfreward.records import write_json

    try:
        batches = tuple(int(x) for x in ns.ceiling_batches.split(","))
    except ValueError:
        raise UserError(f"--ceiling-batches must be integers separated by commas, got {ns.ceiling_batches!r}") from None
    settings = BenchSettings(prompts=ns.prompts, n=ns.n, max_new_tokens=ns.max_new_tokens, k=ns.k,
                             judge_max_new_tokens=ns.judge_max_new_tokens, batch_size=ns.batch_size,
                             dpo_batch_size=ns.dpo_batch_size, ceiling_batches=batches)
    small = {k: v for k, v in vars(settings).items() if k != "ceiling_batches" and v < (2 if k == "n" else 1)}
    if small or min(batches) < 1:
        raise UserError(f"bench: {', '.join(small) or '--ceiling-batches'} must be at least 1 (--n at least 2)")
    report = run(ns.model, settings, naive=ns.naive, work=Path(ns.work) if ns.work else None)
    print(table(report))
    if ns.out:
        write_json(Path(ns.out), report)
        print(f"\nReport in {ns.out}")
    return 0


COMMANDS = {"run": _run, "status": _status, "report": _report, "eval-judge": _eval_judge, "build-eft": _build_eft,
            "compare": _compare, "eval": _eval, "bench": _bench}
