"""The whole loop (SFT + 2 iterations) on the tiny model, every stage real except the judge's generator.

The run itself is the session fixture `finished_run` (conftest.py): `selfreward run --config tiny-cpu ...` called
in-process, so the judge's generator can be replaced by a fake that writes "Score: N" lines; a random model never
does, and without scores there are no pairs to train on. The same fake answers the eval-judge stages, which score
M0 (the base model), M1 (SFT), M2 and M3 (after each DPO) against 2 human-ranked prompts of the builtin eft_eval.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from integration_helpers import STAGE_NAMES, all_stage_keys, eval_keys, fake_scores, tokens

N, K, PROMPTS = 4, 3, 3  # sample.n and judge.k of tiny-cpu.yaml; gen_prompts.num_prompts of FAST
EVAL_PROMPTS = 2  # judge_eval.max_prompts of FAST


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fake_score(i: int, j: int) -> int:
    return (i + j) % 6


@pytest.fixture(scope="module")
def run(finished_run):
    return finished_run["dir"]


def test_every_artifact_and_marker_exists(run):
    assert (run / "sft" / "model" / "model.safetensors").is_file()
    for t in (1, 2):
        for name in ("prompts.jsonl", "prompts.rejected.jsonl", "candidates.jsonl", "judgments.jsonl",
                     "pairs.jsonl"):
            assert (run / f"iter{t}" / name).is_file(), f"iter{t}/{name}"
        assert (run / f"iter{t}" / "model" / "model.safetensors").is_file()
    for name in ("config.yaml", "manifest.json", "summary.json", "summary.txt"):
        assert (run / name).is_file()
    for t in range(4):  # M0 = base, M1 = SFT, M2 and M3 after each DPO
        for name in (f"judge-M{t}.done.json", f"judge-M{t}.json", f"judge-M{t}.judgments.jsonl"):
            assert (run / "eval" / name).is_file(), f"eval/{name}"
    assert sorted(p.name for p in (run / "eval").iterdir()) == sorted(
        [f"judge-M{t}.{ext}" for t in range(4) for ext in ("done.json", "json", "judgments.jsonl")]
        + [f"{name}-M{t}{ext}" for t in (1, 2, 3) for name, ext in (
            ("eval", ".done.json"), ("answers", ".heldout.jsonl"), ("ifeval", ".json"), ("ifeval", ".responses.jsonl"))]
        + [f"compare-M{t}.{ext}" for t in (2, 3) for ext in ("done.json", "judge-check.json", "judge-check.rows.jsonl")]
        + [f"compare-{pair}.{ext}" for pair in ("M2-vs-M1", "M3-vs-M2", "M3-vs-M1")
           for ext in ("json", "verdicts.jsonl")])
    for name in ("report.html", "report.md", "results.json"):
        assert (run / name).is_file()
    assert sorted(tokens(run)) == sorted(all_stage_keys(2) + eval_keys(2))
    # atomic writes leave no temporary file behind
    assert [p for p in run.rglob("*") if p.name.endswith(".tmp")] == []


def test_markers_form_a_chain(run, tiny_model_dir):
    previous = None
    for key in all_stage_keys(2):
        marker = json.loads((run / f"{key}.done.json").read_text())
        folder, name = key.split("/")
        assert marker["stage"] == name
        assert marker["iteration"] == (0 if folder == "sft" else int(folder.removeprefix("iter")))
        assert marker["after"] == previous
        previous = marker["token"]
    sample = json.loads((run / "iter1" / "sample.done.json").read_text())
    # model.name reaches sample through the token chain (M_t); the stage itself never reads it
    assert sample["config"]["sample.n"] == N and "model.name" not in sample["config"]
    assert not any(k.startswith(("generation.", "dpo.", "judge.")) for k in sample["config"])


def test_config_and_manifest(run, tiny_model_dir):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["name"] == str(tiny_model_dir)
    assert cfg["gen_prompts"]["num_prompts"] == PROMPTS and cfg["sample"]["n"] == N and cfg["iterations"] == 2
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["invocations"]) == 1
    assert manifest["versions"]["trl"].startswith("1.") and manifest["versions"]["torch"]


def test_prompts_and_candidates(run):
    for t in (1, 2):
        prompts = read_jsonl(run / f"iter{t}" / "prompts.jsonl")
        assert [p["id"] for p in prompts] == list(range(PROMPTS))
        assert all(len(p["prompt"].split()) >= 4 for p in prompts)  # gen_prompts.min_words
        candidates = read_jsonl(run / f"iter{t}" / "candidates.jsonl")
        assert len(candidates) == PROMPTS * N
        text = {p["id"]: p["prompt"] for p in prompts}
        for c in candidates:
            assert c["id"] == c["prompt_id"] * N + c["id"] % N
            assert c["prompt"] == text[c["prompt_id"]]
            assert isinstance(c["response"], str) and c["response"]
        assert [c["id"] for c in candidates] == list(range(PROMPTS * N))


def test_judge_requests_and_raw_judgments(run, finished_run):
    from selfreward.judges import templates

    judges = [c for c in finished_run["calls"] if c["desc"].startswith("judge ")]
    # per iteration, the judge is M_t, called once with every candidate
    assert [j["model"] for j in judges] == [str(run / "sft" / "model"), str(run / "iter1" / "model")]
    template = templates.load("rubric")
    for t, call in zip((1, 2), judges):
        candidates = read_jsonl(run / f"iter{t}" / "candidates.jsonl")
        assert call["requests"] == [[{"role": "user", "content": templates.render(
            template, {"instruction": c["prompt"], "response": c["response"]})}] for c in candidates]
        s = call["sampling"]
        assert (s.n, s.temperature, s.top_p, s.max_new_tokens, s.seed) == (K, 0.7, 0.9, 12, 2000 * t)

        judgments = read_jsonl(run / f"iter{t}" / "judgments.jsonl")
        assert len(judgments) == len(candidates)
        for i, (j, c) in enumerate(zip(judgments, candidates)):
            assert j["candidate_id"] == c["id"] and j["prompt_id"] == c["prompt_id"]
            assert j["raw"] == [f"Looks fine. Score: {fake_score(i, k)}" for k in range(K)]
            assert j["scores"] == [float(fake_score(i, k)) for k in range(K)]
            assert j["score"] == pytest.approx(sum(j["scores"]) / K)


def test_pairs_are_best_vs_worst_of_one_prompt(run):
    # candidate means, by candidate index: (i, i+1, i+2) % 6 averaged -> 1, 2, 3, 4, 3, 2, 1, 2, 3, 4, 3, 2
    expected = [  # (prompt_id, chosen_id, rejected_id, chosen_score, rejected_score)
        (0, 3, 0, 4.0, 1.0),
        (1, 4, 6, 3.0, 1.0),
        (2, 9, 11, 4.0, 2.0),
    ]
    for t in (1, 2):
        candidates = {c["id"]: c for c in read_jsonl(run / f"iter{t}" / "candidates.jsonl")}
        pairs = read_jsonl(run / f"iter{t}" / "pairs.jsonl")
        assert [(p["prompt_id"], p["chosen_id"], p["rejected_id"], p["chosen_score"], p["rejected_score"])
                for p in pairs] == expected
        for p in pairs:
            chosen, rejected = candidates[p["chosen_id"]], candidates[p["rejected_id"]]
            assert chosen["prompt_id"] == rejected["prompt_id"] == p["prompt_id"]
            assert p["prompt"] == chosen["prompt"] == rejected["prompt"]
            assert p["chosen"] == chosen["response"] and p["rejected"] == rejected["response"]


def test_stats_and_summary(run):
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sft"]["examples"] + summary["sft"]["dropped_too_long"] == 16  # data.max_ift + data.max_eft
    assert summary["sft"]["steps"] == -(-summary["sft"]["examples"] // 4)  # sft.batch_size=4, one epoch
    assert len(summary["iterations"]) == 2
    for t, row in enumerate(summary["iterations"], 1):
        assert row["iteration"] == t
        assert (row["prompts_kept"], row["candidates"], row["judgments"], row["pairs"]) == (PROMPTS, 12, 36, 3)
        assert row["parse_failure_rate"] == 0.0 and row["unscored_candidates"] == 0
        assert row["mean_score"] == 2.5
        # per candidate, of its mean score (rounded): means 1 2 3 4 3 2 1 2 3 4 3 2
        assert row["score_histogram"] == {"1": 2, "2": 4, "3": 4, "4": 2}
        assert (row["pairs_used"], row["dropped_too_long"], row["steps"]) == (3, 0, 1)  # dpo.batch_size=4
        assert row["train_loss"] == pytest.approx(0.6931, abs=1e-3)  # one step from policy == reference
    iteration_table = (run / "summary.txt").read_text().split("\n\n")[0].splitlines()
    assert "scores 0/1/2/3/4/5" in iteration_table[1]
    assert all("0/2/4/4/2/0" in line.split() for line in iteration_table[2:4])


# The 2 eft_eval prompts that judge_eval.max_prompts=2 picks with seed 0, and what the fake judge makes of them.
# Responses in order: (human value, length in characters); the fake judge's mean scores by position 0..6 are
# 1, 2, 3, 4, 3, 2, 1 (see FakeJudge).
EVAL_GROUPS = [
    [(11 / 12, 548), (2 / 3, 449), (2 / 3, 1366), (1 / 6, 1046)],  # judge 1 2 3 4: reversed, 5 pairs disagree
    [(0.875, 444), (0.8125, 2322), (0.0, 5)],                       # judge 3 2 1: 3 pairs agree
]
# By hand: 8 human-ordered pairs (one human tie), 3 agree -> 3/8. Shorter-preferred pairs: 548<1366, 548<1046,
# 449<1046 (disagree), 444<2322 (agree) -> 1/4. Length heuristic: 2 of 5 and 2 of 3 -> 4/8. Spearman of the 7
# scores against the lengths: 0.34876. Mean score 16/7.
EVAL_STATS = {"source": "rubric", "mode": "sample", "prompts": 2, "pairs": 8, "pairwise_accuracy": 0.375,
              "shorter_preferred_accuracy": 0.25, "length_correlation": 0.3488, "partial_correlation": -0.2365,
              "parse_failure_rate": 0.0, "mean_score": 2.2857, "length_baseline_accuracy": 0.5,
              "random_baseline_accuracy": 0.485625}


def eval_items():
    from selfreward.judges.agreement import limit_groups
    from selfreward.judges.sets import load_judge_set

    groups = limit_groups(load_judge_set("builtin")[0], EVAL_PROMPTS, 0)
    assert [[(r["human"], len(r["text"])) for r in g["responses"]] for g in groups] == \
        [[(pytest.approx(h), n) for h, n in g] for g in EVAL_GROUPS], "the builtin eft_eval changed"
    return groups


def test_eval_judge_markers_hang_off_the_chain(run):
    from selfreward.rundir import EVAL_JUDGE, RunDir, Stage

    rd = RunDir(run)
    after = [None, rd.marker(Stage("sft", 0))["token"], rd.marker(Stage("dpo", 1))["token"],
             rd.marker(Stage("dpo", 2))["token"]]
    for t in range(4):
        marker = json.loads((run / "eval" / f"judge-M{t}.done.json").read_text())
        assert (marker["stage"], marker["iteration"], marker["after"]) == (EVAL_JUDGE, t, after[t])
        assert marker["config"]["judge_eval.max_prompts"] == EVAL_PROMPTS and marker["config"]["judge.k"] == K
        assert marker["config"]["data.eft_eval"] == "builtin"
        assert marker["stats"]["model"] == f"M{t}"
        assert {k: v for k, v in marker["stats"].items() if k not in ("model", "wall_seconds")} == EVAL_STATS


def test_fake_judge_answers_the_eval_judge_requests(run, finished_run, tiny_model_dir):
    from selfreward.judges import templates
    from selfreward.judges.rubric import requests_for

    calls = finished_run["calls"]
    # in plan order: eval M0, eval M1, judge 1, eval M2, judge 2, eval M3; nothing else was judged by the fake
    assert [c["desc"].split(" ")[0] for c in calls if not c["desc"].startswith("compare")] == \
        ["eval-judge", "eval-judge", "judge", "eval-judge", "judge", "eval-judge"]
    evals = [c for c in calls if c["desc"].startswith("eval-judge")]
    models = [str(tiny_model_dir), str(run / "sft" / "model"), str(run / "iter1" / "model"),
              str(run / "iter2" / "model")]
    assert [c["model"] for c in evals] == models
    groups = eval_items()
    items = [(g["prompt"], r["text"]) for g in groups for r in g["responses"]]
    assert len(items) == 7
    for t, call in enumerate(evals):
        assert call["requests"] == requests_for(templates.load("rubric"), items)
        s = call["sampling"]
        assert (s.n, s.temperature, s.top_p, s.max_new_tokens, s.seed) == (K, 0.7, 0.9, 12, 0)
        assert call["desc"] == f"eval-judge M{t}"

        rows = read_jsonl(run / "eval" / f"judge-M{t}.judgments.jsonl")
        assert len(rows) == 7
        responses = [(g["id"], r) for g in groups for r in g["responses"]]
        for i, (row, (gid, r)) in enumerate(zip(rows, responses)):
            assert (row["group_id"], row["response_id"], row["human"], row["chars"]) == \
                (gid, r["id"], r["human"], len(r["text"]))
            assert row["mode"] == "sample"
            assert row["raw"] == [f"Looks fine. Score: {fake_score(i, k)}" for k in range(K)]
            assert row["score"] == pytest.approx(fake_scores(7)[i])
        assert [row["score"] for row in rows] == pytest.approx([1, 2, 3, 4, 3, 2, 1])

        result = json.loads((run / "eval" / f"judge-M{t}.json").read_text())
        assert (result["model"], result["path"], result["mode"]) == (f"M{t}", models[t], "sample")
        j = result["judge"]
        assert (j["groups"], j["pairs"], j["agree"], j["tie"], j["disagree"]) == (2, 8, 3, 0, 5)
        assert j["pairwise_accuracy"] == 0.375 and j["shorter_preferred_pairs"] == 4
        assert j["shorter_preferred_accuracy"] == 0.25
        assert j["length_correlation"] == pytest.approx(0.348756, abs=1e-6)
        assert (j["responses"], j["parse_failures"], j["parse_failure_rate"]) == (7, 0, 0.0)
        assert j["mean_score"] == pytest.approx(16 / 7)
        assert j["score_histogram"] == {"1": 2, "2": 2, "3": 2, "4": 1}
        assert result["length"]["pairwise_accuracy"] == 0.5
        assert 0.3 < result["random"]["pairwise_accuracy"] < 0.7


def test_summary_has_the_judge_agreement_table(run):
    summary = json.loads((run / "summary.json").read_text())
    rows = summary["judge_agreement"]
    assert [r["model"] for r in rows] == ["M0", "M1", "M2", "M3"]
    for r in rows:
        assert {k: v for k, v in r.items() if k not in ("model", "wall_seconds")} == EVAL_STATS
        assert isinstance(r["pairwise_accuracy"], float) and isinstance(r["length_baseline_accuracy"], float)
        assert isinstance(r["partial_correlation"], float) and isinstance(r["random_baseline_accuracy"], float)
    text = (run / "summary.txt").read_text()
    head, _, judge_table = text.partition("\n\nJudge agreement with human rankings (data.eft_eval), beside the "
                                          "length heuristic:\n")
    assert judge_table, text
    lines = judge_table.partition("\n\n")[0].splitlines()
    assert len(lines) == 5
    assert "pairwise acc" in lines[0] and "length heuristic acc" in lines[0] and "shorter-preferred acc" in lines[0]
    for t, (line, r) in enumerate(zip(lines[1:], rows)):
        assert line.split() == [f"M{t}", "rubric", "sample", "8", "37.5%", "25.0%", "0.3488",
                                f"{r['partial_correlation']:g}", "0.0%", "2.2857", "50.0%"]
    # above it: the SFT line, the iteration table (a header and one row per iteration), then the score distribution
    lines = head.splitlines()
    assert lines[0].startswith("SFT: ") and lines[1].startswith("iter") and [x.split()[0] for x in lines[2:4]] == \
        ["1", "2"]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_each_iteration_changes_the_model_and_models_load(run, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, m1, m2, m3 = (_weights(d) for d in (tiny_model_dir, run / "sft" / "model", run / "iter1" / "model",
                                               run / "iter2" / "model"))
    assert set(base) == set(m1) == set(m2) == set(m3)
    for before, after in ((base, m1), (m1, m2), (m2, m3)):
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert changed, "training left every weight unchanged"
        assert all(torch.isfinite(after[k]).all() for k in after)

    tok = AutoTokenizer.from_pretrained(str(run / "iter2" / "model"))
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    for d in (run / "sft" / "model", run / "iter1" / "model", run / "iter2" / "model"):
        model = AutoModelForCausalLM.from_pretrained(str(d))
        assert model.config.model_type == "llama" and model.config.hidden_size == 32
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()


def test_status_command_reports_every_stage_done(run, tmp_path, capsys):
    import shutil

    from selfreward import cli

    copy = tmp_path / "run"
    shutil.copytree(run, copy)  # status rewrites summary files; keep the shared run untouched
    assert cli.main(["status", str(copy)]) == 0
    out = capsys.readouterr().out
    lines = {line[:28].strip(): line[28:].strip() for line in out.splitlines()[:20]}
    assert lines == {"sft": "done", **{f"{s} (iteration {t})": "done" for t in (1, 2) for s in STAGE_NAMES},
                     **{f"eval-judge (M{t})": "done" for t in range(4)}, **{f"eval (M{t})": "done" for t in (1, 2, 3)},
                     **{f"compare (M{t})": "done" for t in (2, 3)}}
    assert "Judge agreement with human rankings" in out


def test_random_judge_gives_no_pairs_and_dpo_refuses(run, tmp_path, capsys):
    """Without the fake judge: the random model never writes a score line, every judgment is kept raw and
    unparsed, no pair survives, and dpo stops with a UserError (exit 2) instead of training on nothing."""
    import shutil

    from selfreward import cli
    from selfreward.rundir import RunDir, Stage

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert cli.main(["judge", str(copy), "-t", "1", "judge.backend=transformers"]) == 0
    assert cli.main(["pairs", str(copy), "-t", "1"]) == 0
    judgments = read_jsonl(copy / "iter1" / "judgments.jsonl")
    assert len(judgments) == PROMPTS * N
    assert all(len(j["raw"]) == K and all(isinstance(r, str) and r for r in j["raw"]) for j in judgments)
    assert all(j["scores"] == [None] * K and j["score"] is None and j["spread"] is None for j in judgments)
    rd = RunDir(copy)
    stats = rd.marker(Stage("judge", 1))["stats"]
    assert (stats["judgments"], stats["parse_failures"], stats["parse_failure_rate"]) == (36, 36, 1.0)
    assert stats["mean_score"] is None and stats["score_histogram"] == {}
    assert read_jsonl(copy / "iter1" / "pairs.jsonl") == []
    assert rd.marker(Stage("pairs", 1))["stats"]["dropped"] == {"fewer than 2 valid scores": PROMPTS}
    capsys.readouterr()

    assert cli.main(["dpo", str(copy), "-t", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfreward: error: iteration 1: no preference pair to train on (0 pairs")
    assert str(copy / "iter1" / "judgments.jsonl") in err
    # the failed stage kept its old marker (it failed before writing anything), which is stale: its input, the
    # pairs, was recomputed, so the next run redoes it, and everything after it
    from selfreward.pipeline import load_run_config, state

    assert state(rd, load_run_config(rd), Stage("dpo", 1)) == "stale"


# --- benchmark evaluation and head to head ------------------------------------------------------------------------

def test_eval_stage_ifeval_and_held_back_answers(run):
    held = read_jsonl(run / "iter1" / "prompts.heldout.jsonl")
    trained = {p["prompt"] for p in read_jsonl(run / "iter1" / "prompts.jsonl")}
    assert len(held) == 2 and not trained & {p["prompt"] for p in held}  # never trained on
    gen1 = json.loads((run / "iter1" / "gen-prompts.done.json").read_text())["stats"]
    assert gen1["prompts_held_back"] == 2 and gen1["prompts_kept"] == PROMPTS
    for t in (1, 2, 3):
        answers = read_jsonl(run / "eval" / f"answers-M{t}.heldout.jsonl")
        assert [(a["id"], a["instruction"]) for a in answers] == [(p["id"], p["prompt"]) for p in held]
        assert all(a["model"] == f"M{t}" and a["max_new_tokens"] == 12 for a in answers)
        result = json.loads((run / "eval" / f"ifeval-M{t}.json").read_text())
        responses = read_jsonl(run / "eval" / f"ifeval-M{t}.responses.jsonl")
        assert result["model"] == f"M{t}" and result["n_prompts"] == 2 == len(responses)
        strict = [f for r in responses for f in r["follow_strict"]]
        assert result["n_instructions"] == len(strict)
        assert result["inst_strict"] == pytest.approx(sum(strict) / len(strict))
        assert result["mean_length_chars"] == pytest.approx(sum(len(r["response"]) for r in responses) / 2, abs=0.05)
        marker = json.loads((run / "eval" / f"eval-M{t}.done.json").read_text())
        assert marker["stats"]["inst_strict"] == round(result["inst_strict"], 4)
    # M1 and M2 are different models: their greedy answers are their own
    assert read_jsonl(run / "eval" / "answers-M1.heldout.jsonl") != \
        read_jsonl(run / "eval" / "answers-M2.heldout.jsonl")


def test_compare_stages_first_slot_judge_gives_only_ties(run, finished_run):
    """The fake judge gives P(A) 0.7, P(B) 0.3 whatever the order: by forced choice, averaged over both orders,
    P(newer is better) is 0.5 every time, a tie, and the first-slot share is 100% in both orders."""
    judges = [c for c in finished_run["option_calls"] if c["desc"].startswith("compare")]
    # the older model of each pair judges: M1 for M2 vs M1, M2 for M3 vs M2, M1 for M3 vs M1; the judge of each
    # stage's first head-to-head is also checked on LLMBar pairs, in the same call sequence
    assert [(Path(c["model"]), c["desc"].split(":")[0]) for c in judges] == [
        (run / "sft" / "model", "compare M2 vs M1 (judge M1, both orders)"), (run / "sft" / "model", "compare M2"),
        (run / "iter1" / "model", "compare M3 vs M2 (judge M2, both orders)"), (run / "iter1" / "model", "compare M3"),
        (run / "sft" / "model", "compare M3 vs M1 (judge M1, both orders)")]
    for pair, judge in (("M2-vs-M1", "M1"), ("M3-vs-M2", "M2"), ("M3-vs-M1", "M1")):
        result = json.loads((run / "eval" / f"compare-{pair}.json").read_text())
        assert (result["a"], result["b"], result["judge"]) == (*pair.split("-vs-"), judge)
        assert (result["n"], result["wins"], result["ties"], result["losses"]) == (2, 0, 2, 0)
        assert (result["method"], result["margin"], result["mean_p_a"], result["unreadable"]) == \
            ("forced choice", 0.05, 0.5, 0)
        assert result["position_bias"] == {"ab": 1.0, "ba": 1.0}
        assert result["verdicts"] == {"first": 4, "second": 0, "tie": 0, "unparsed": 0}
        assert result["tie_rate"] == 1.0 and result["ci"]["tie_rate"] == [1.0, 1.0]
        rows = read_jsonl(run / "eval" / f"compare-{pair}.verdicts.jsonl")
        a, b = pair.split("-vs-")
        answers_a = read_jsonl(run / "eval" / f"answers-{a}.heldout.jsonl")
        answers_b = read_jsonl(run / "eval" / f"answers-{b}.heldout.jsonl")
        assert [r["answer_a"] for r in rows] == [x["answer"] for x in answers_a]
        assert [r["answer_b"] for r in rows] == [x["answer"] for x in answers_b]
        assert all(r["outcome"] == "tie" and r["p_a"] == 0.5 and r["option_probs_ab"] == r["option_probs_ba"]
                   == [0.7, 0.3] for r in rows)
    for call in judges[::2]:  # both orders of the 2 held-back prompts in one call
        assert len(call["requests"]) == 4 and call["prefixes"] == ["Better response:"] * 4
    for t, judge in ((2, "M1"), (3, "M2")):
        check = json.loads((run / "eval" / f"compare-M{t}.judge-check.json").read_text())
        assert (check["judge"], check["pairs"], check["method"], check["judge_accuracy"]) == \
            (judge, 4, "forced choice", 0.5)
        assert check["position_bias"] == {"ab": 1.0, "ba": 1.0}
        assert len(read_jsonl(run / "eval" / f"compare-M{t}.judge-check.rows.jsonl")) == 4


def test_report_has_the_evaluations(run):
    results = json.loads((run / "results.json").read_text())
    assert [r["model"] for r in results["ifeval"]] == ["M1", "M2", "M3"]
    assert [(r["a"], r["b"], r["ties"]) for r in results["win_rates"]] == [("M2", "M1", 2), ("M3", "M1", 2),
                                                                           ("M3", "M2", 2)]
    assert [r["model"] for r in results["judge_agreement"]] == ["M0", "M1", "M2", "M3"]
    assert set(results["missing"]) <= {"suites"}  # no judged suite in this run
    html = (run / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and html.count('src="data:image/png;base64,') >= 5


def test_summary_has_the_model_table(run):
    summary = json.loads((run / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["M1", "M2", "M3"]
    assert [(m["vs_previous"], m["vs_M1"]) for m in summary["models"]] == [(None, None), ("0/2/0 p=0.50", None),
                                                                          ("0/2/0 p=0.50", "0/2/0 p=0.50")]
    check = json.loads((run / "eval" / "compare-M3.judge-check.json").read_text())
    assert summary["models"][2]["judge_check"] == f"50% (length {100 * check['length_accuracy']:.0f}%)"
    text = (run / "summary.txt").read_text()
    table = text[text.index("Each model on IFEval"):].splitlines()
    assert table[2].split()[0] == "M1" and table[4].split()[-7:-3] == ["0/2/0", "p=0.50", "0/2/0", "p=0.50"]
