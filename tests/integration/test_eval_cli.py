"""`selfreward eval` end to end: the tiny model answers IFEval, Vicuna and AlpacaEval-style questions; a stub
OpenAI-compatible server on 127.0.0.1 rates (Vicuna) and compares against the references (alpaca)."""

from __future__ import annotations

import json
import re

import pytest

from openai_stub import completion, stub_server
from selfreward.records import read_jsonl, write_jsonl

REFERENCES = [{"instruction": f"Question row{i}: name a colour.", "output": f"REFERENCE-ANSWER {i}", "dataset": "t",
               "generator": "ref"} for i in (1, 2)]


def judge_reply(body, index):
    """Rates every single answer 7; in a comparison, prefers whichever slot holds the reference."""
    prompt = "\n".join(m["content"] for m in body["messages"])
    pair = re.search(r"<response_a>\n(.*?)\n</response_a>", prompt, re.S)
    if pair is None:
        return 200, completion(["Helpful enough. Rating: [[7]]"])
    return 200, completion(["[[A]]" if "REFERENCE-ANSWER" in pair.group(1) else "[[B]]"])


pytestmark = pytest.mark.usefixtures("no_proxy")


def test_eval_three_suites_with_a_stub_judge(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from selfreward import cli

    monkeypatch.setenv("STUB_JUDGE_KEY", "k")
    ref = tmp_path / "alpaca.jsonl"
    write_jsonl(ref, REFERENCES)
    out = tmp_path / "ev"
    with stub_server(judge_reply) as (url, requests):
        rc = cli.main(["eval", "--model", str(tiny_model_dir), "--suite", "ifeval,vicuna,alpaca", "--max-prompts", "2",
                       "--judge", "openai:judge-model", "--alpaca-reference", str(ref), "--out", str(out),
                       "model.dtype=float32", "eval.max_new_tokens=8", "judge.max_new_tokens=16",
                       f"judge.base_url={url}", "judge.api_key_env=STUB_JUDGE_KEY"])
    assert rc == 0, capsys.readouterr().err
    label = tiny_model_dir.name
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"ifeval-{label}.json", f"ifeval-{label}.responses.jsonl",
                            f"suite-vicuna-{label}.json", f"suite-vicuna-{label}.rows.jsonl",
                            f"suite-alpaca-{label}.json", f"suite-alpaca-{label}.rows.jsonl"])
    ifeval = json.loads((out / f"ifeval-{label}.json").read_text())
    assert ifeval["n_prompts"] == 2 and ifeval["iteration"] is None
    vicuna = json.loads((out / f"suite-vicuna-{label}.json").read_text())
    assert (vicuna["score"], vicuna["judgments"], vicuna["rated"], vicuna["judge"]) == (7.0, 2, 2, "judge-model")
    alpaca = json.loads((out / f"suite-alpaca-{label}.json").read_text())
    # the judge prefers the reference in both orders: two losses, and the answers' lengths beside the reference's
    assert (alpaca["n"], alpaca["wins"], alpaca["ties"], alpaca["losses"]) == (2, 0, 0, 2)
    assert alpaca["score"] == 0.0 and alpaca["mean_len_reference"] == len("REFERENCE-ANSWER 1")
    rows = read_jsonl(out / f"suite-alpaca-{label}.rows.jsonl")
    assert [r["instruction"] for r in rows] == [r["instruction"] for r in REFERENCES]
    # 2 ratings + 2 prompts x 2 orders, all to the judge model
    assert len(requests) == 6 and {r["body"]["model"] for r in requests} == {"judge-model"}
    assert all(r["headers"]["Authorization"] == "Bearer k" for r in requests)
    stdout = capsys.readouterr().out
    assert "judge = judge-model" in stdout and "vicuna_score" in stdout


def test_eval_rejects_a_bad_suite_before_loading_anything(tmp_path, capsys):
    from selfreward import cli

    assert cli.main(["eval", "--model", str(tmp_path / "no-model"), "--suite", "ifeval,mmlu"]) == 2
    assert "unknown suite(s) ['mmlu']" in capsys.readouterr().err
