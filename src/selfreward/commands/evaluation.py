"""The commands that evaluate models: compare (head to head) and eval (benchmark suites)."""

from __future__ import annotations

from pathlib import Path

from selfreward.commands.judging import slug
from selfreward.commands.run import recipe_path
from selfreward.config import load_config
from selfreward.errors import UserError


def compare(ns) -> int:
    from selfreward.compare import check_line, resolve_judge, run_compare, table
    from selfreward.evals.prompts import load_prompt_set
    from selfreward.judges.agreement import limit_groups

    cfg = load_config(recipe_path(ns.config) if ns.config else None, ns.overrides)
    if ns.max_prompts is not None and ns.max_prompts < 1:
        raise UserError(f"--max-prompts must be at least 1, got {ns.max_prompts}")
    ns.judge = ns.judge or cfg.eval.judge or "b"
    resolve_judge(ns.judge)
    rows = limit_groups(load_prompt_set(ns.prompts), ns.max_prompts, cfg.seed)
    out = Path(ns.out or f"compare/{slug(ns.model_a)}-vs-{slug(ns.model_b)}")
    later = sum(r["later_turns"] > 0 for r in rows)
    print(f"{ns.prompts}: {len(rows)} prompts" + (f"; {later} with later turns, only the first is asked" if later
                                                  else ""))
    print(f"A = {ns.model_a}\nB = {ns.model_b}\njudge = {_judge_label(ns)}, both orders; greedy answers up to "
          f"{cfg.sample.max_new_tokens} tokens", flush=True)
    result = run_compare(cfg, {"a": ns.model_a, "b": ns.model_b}, ns.judge, ns.prompts, rows, out)
    print("\n" + table(f"A vs B on {ns.prompts} ({result['n']} prompts), judge {result['judge']}", result))
    if result["judge_check"]:
        print(check_line(result["judge_check"]))
    print(f"\nAnswers, verdicts (raw judge texts or option probabilities) and compare.json in {out}/")
    return 0


def evaluate(ns) -> int:
    from selfreward.compare import eval_judge, judge_target, model_path, resolve_judge
    from selfreward.evals.runner import JUDGED, evaluate_model

    suites = [x.strip() for x in ns.suite.split(",") if x.strip()]
    overrides = [f"eval.suites=[{','.join(suites)}]"]
    overrides += [f"eval.max_prompts={ns.max_prompts}"] if ns.max_prompts is not None else []
    overrides += [f"eval.alpaca_reference={ns.alpaca_reference}"] if ns.alpaca_reference else []
    overrides += [f"eval.judge={ns.judge}"] if ns.judge else []
    cfg = load_config(recipe_path(ns.config) if ns.config else None, list(ns.overrides) + overrides)
    if not suites:
        raise UserError("--suite is empty; name one or more of: ifeval, mtbench, vicuna, alpaca")
    path = model_path(cfg, ns.model)
    spec = eval_judge(cfg) if set(suites) & set(JUDGED) else None
    judge_cfg, judge = judge_target(cfg, spec, "--judge" if ns.judge else "eval.judge") if spec else (cfg, None)
    out = Path(ns.out or f"evals/{slug(ns.model)}")
    label = resolve_judge(spec)[1] if spec else None  # a served judge by the name it serves
    print(f"model = {ns.model}\nsuites = {', '.join(suites)}" + (f"\njudge = {label or 'the model itself'}"
          if set(suites) & set(JUDGED) else "") + f"\ngreedy answers up to {cfg.eval.max_new_tokens} tokens",
          flush=True)
    stats = evaluate_model(cfg, path, slug(ns.model.rstrip("/").rsplit("/", 1)[-1]), out, judge=judge,
                           judge_cfg=judge_cfg, judge_label=label)
    print("\n" + "\n".join(f"{k:14s} {v}" for k, v in stats.items()))
    print(f"\nAnswers, raw judgments and results (JSON) in {out}/")
    return 0


def _judge_label(ns) -> str:
    return {"a": f"MODEL_A ({ns.model_a})", "b": f"MODEL_B ({ns.model_b})"}.get(ns.judge, ns.judge)


