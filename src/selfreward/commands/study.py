"""`selfreward study`: which reward improves a model. Variants of one recipe, each a run directory of its own with
the same seed, sharing what is identical and differing from judging on.

    OUT/shared/            SFT, iteration 1's prompts and candidates, M1's benchmarks: run once
    OUT/<variant>/         a copy of shared/ (files hard-linked, never written in place), then the rest of the run
                           under the variant's overrides
    OUT/study.json, OUT/study.md   one table: per variant and iteration, the reward's agreement with humans beside
                           the length heuristic, IFEval, answer length and its growth, pairs kept and their length
                           gap, wall time; and each variant's last model head to head with M1

A variant whose overrides would change a shared stage (sample.n, say) is refused before anything runs: it would not
share that stage.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selfreward import pipeline
from selfreward.commands.run import check_inputs, recipe_path
from selfreward.config import RunConfig, load_config
from selfreward.errors import UserError
from selfreward.records import write_json
from selfreward.rundir import RunDir, Stage, stage_config
from selfreward.stages import BY_NAME

SHARED = [Stage("sft", 0), Stage("gen-prompts", 1), Stage("sample", 1), Stage("eval", 1)]


def variants(cfg: RunConfig, sources: str | None) -> dict[str, list[str]]:
    """{name: overrides} from --sources (one variant per reward source) or from the config's study.variants."""
    if sources:
        return {s.strip(): [f"reward.source={s.strip()}"] for s in sources.split(",") if s.strip()}
    out = {}
    for spec in cfg.study.variants:
        name, sep, rest = spec.partition(":")
        if not sep or not name.strip():
            raise UserError(f"study.variants: {spec!r} must look like 'NAME: key=value key=value'")
        out[name.strip()] = rest.split()
    if not out:
        raise UserError("a study needs variants: --sources rubric,pairwise,... or study.variants in the recipe")
    return out


def command(ns) -> int:
    recipe = recipe_path(ns.config)
    base = load_config(recipe, ns.overrides)
    plan = variants(base, ns.sources)
    configs = {name: load_config(recipe, [*ns.overrides, *extra]) for name, extra in plan.items()}
    for name, cfg in configs.items():  # every variant checked before anything runs
        _check_shares(name, base, cfg)
        check_inputs(cfg)
    out = Path(ns.out or f"runs/{recipe.stem}-study")
    shared = RunDir(out / "shared")
    _run_shared(shared, base)
    for name, cfg in configs.items():
        print(f"\n=== variant {name}: {' '.join(plan[name]) or '(the recipe as it is)'}", flush=True)
        rd = RunDir(out / name)
        if not rd.root.exists():
            shutil.copytree(shared.root, rd.root, copy_function=os.link)
        pipeline.check_changes(rd, cfg, redo=False)
        pipeline.prepare(rd, cfg, pipeline.argv())
        pipeline.run_all(rd, cfg)
    table = collect(out, configs)
    write_json(out / "study.json", table)
    text = render(table)
    (out / "study.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    print(f"\nStudy in {out}/ (study.json, study.md; one run directory per variant)")
    return 0


def _check_shares(name: str, base: RunConfig, cfg: RunConfig) -> None:
    for stage in SHARED:
        deps = BY_NAME[stage.name].deps
        a, b = stage_config(base, deps), stage_config(cfg, deps)
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if changed:
            raise UserError(f"study variant {name!r} changes {changed[0]}, which {stage} depends on: variants share "
                            "the SFT, iteration 1's prompts and answers and M1's benchmarks; make it a separate run")


def _run_shared(rd: RunDir, cfg: RunConfig) -> None:
    pipeline.check_changes(rd, cfg, redo=False)
    pipeline.prepare(rd, cfg, pipeline.argv())
    for stage in SHARED:
        if stage.name == "eval" and not (cfg.eval.suites or cfg.eval.compare_prompts):
            continue
        if pipeline.state(rd, cfg, stage) == "done":
            print(f"[skip] {stage}: done (shared)", flush=True)
            continue
        print(f"[run ] {stage} (shared)", flush=True)
        pipeline.execute(rd, cfg, stage)


# --- the table -------------------------------------------------------------------------------------------------

def collect(out: Path, configs: dict[str, RunConfig]) -> dict:
    rows = []
    for name, cfg in configs.items():
        rd = RunDir(out / name)
        lengths = []
        for t in range(1, cfg.iterations + 2):
            row = {"variant": name, "model": f"M{t}"}
            row.update(_judge(rd, t))
            row.update(_stats(rd, Stage("eval", t), "prompt_strict", "prompt_loose", "inst_strict", "inst_loose",
                              "heldout_mean_chars"))
            if t <= cfg.iterations:
                row.update(_stats(rd, Stage("sample", t), "mean_response_chars", "cut_off"))
                row.update(_stats(rd, Stage("pairs", t), "pairs", "mean_chosen_chars", "mean_rejected_chars",
                                  "length_penalty", "length_control"))
                row["wall_seconds"] = round(sum((rd.marker(Stage(s, t)) or {}).get("stats", {}).get("wall_seconds", 0)
                                                for s in ("judge", "pairs", "dpo")), 1)
            lengths.append(row.get("mean_response_chars"))
            row["length_growth"] = _growth(lengths)
            rows.append(row)
        final = rd.marker(Stage("compare", cfg.iterations + 1))
        if final:
            rows[-1]["vs_M1"] = final["stats"].get("vs_M1")
    return {"rows": rows}


def _judge(rd: RunDir, t: int) -> dict:
    stats = (rd.marker(Stage("eval-judge", t)) or {}).get("stats", {})
    out = {f"eft_{k}": stats.get(k) for k in ("pairwise_accuracy", "shorter_preferred_accuracy",
                                             "length_baseline_accuracy")}
    llmbar = stats.get("set:llmbar-natural", {})
    out.update({f"llmbar_{k}": llmbar.get(k) for k in ("pairwise_accuracy", "shorter_preferred_accuracy",
                                                       "length_baseline_accuracy")})
    return out


def _stats(rd: RunDir, stage: Stage, *keys: str) -> dict:
    stats = (rd.marker(stage) or {}).get("stats", {})
    return {k: stats.get(k) for k in keys}


def _growth(lengths: list[float | None]) -> float | None:
    if len(lengths) < 2 or None in lengths[-2:] or not lengths[-2]:
        return None
    return round(lengths[-1] / lengths[-2], 3)


COLUMNS = [("variant", "variant"), ("model", "model"), ("EFT acc", "eft_pairwise_accuracy"),
           ("EFT shorter-pref", "eft_shorter_preferred_accuracy"), ("EFT length", "eft_length_baseline_accuracy"),
           ("LLMBar acc", "llmbar_pairwise_accuracy"), ("LLMBar shorter-pref", "llmbar_shorter_preferred_accuracy"),
           ("LLMBar length", "llmbar_length_baseline_accuracy"), ("IFEval prompt loose", "prompt_loose"),
           ("IFEval prompt strict", "prompt_strict"), ("IFEval instruction loose", "inst_loose"),
           ("IFEval instruction strict", "inst_strict"), ("answer chars", "mean_response_chars"),
           ("growth", "length_growth"), ("held-back answer chars", "heldout_mean_chars"), ("pairs", "pairs"),
           ("chosen-rejected chars", "gap"),
           ("vs M1 W/T/L", "vs_M1"), ("wall s", "wall_seconds")]


def render(table: dict) -> str:
    rows = []
    for r in table["rows"]:
        chosen, rejected = r.get("mean_chosen_chars"), r.get("mean_rejected_chars")
        gap = None if chosen is None or rejected is None else round(chosen - rejected, 1)
        rows.append({**r, "gap": gap})
    cells = [[h for h, _ in COLUMNS]] + [[_fmt(k, r.get(k)) for _, k in COLUMNS] for r in rows]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(COLUMNS))
    return "\n".join(lines)


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("accuracy") or key.startswith(("prompt_", "inst_")):
        return f"{100 * value:.1f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)
