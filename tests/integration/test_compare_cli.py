"""`selfreward compare` end to end: the tiny model answers, a stub OpenAI-compatible server on 127.0.0.1 judges."""

from __future__ import annotations

import json
import re

import pytest

from openai_stub import completion, stub_server
from selfreward.records import read_jsonl, write_jsonl

PROMPTS = [{"id": f"p{i}", "instruction": f"Question row{i}: say something."} for i in range(1, 5)]
# B's answers, written beforehand into the output folder, which compare reuses (their keys match); A's come from
# the tiny model, whose greedy text never says GOOD or BAD.
ANSWERS_B = ["GOOD b1", "GOOD b2", "BAD b3", "meh b4"]


def judge_reply(body, index):
    """Prefers the slot saying GOOD, rejects the one saying BAD, and writes no verdict for row4."""
    prompt = body["messages"][0]["content"]
    a, b = (re.search(rf"<response_{s}>\n(.*?)\n</response_{s}>", prompt, re.S).group(1) for s in "ab")
    if "row4" in prompt:
        text = "I cannot decide."
    elif "GOOD" in a or "BAD" in b:
        text = "Response A is better. [[A]]"
    elif "GOOD" in b or "BAD" in a:
        text = "Response B is better. [[B]]"
    else:
        text = "[[tie]]"
    return 200, completion([text])


pytestmark = pytest.mark.usefixtures("no_proxy")


def test_compare_with_a_stub_judge(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from selfreward import cli

    monkeypatch.setenv("STUB_JUDGE_KEY", "secret-1")
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, PROMPTS)
    out = tmp_path / "cmp"
    model = str(tiny_model_dir)
    write_jsonl(out / "answers-b.jsonl", [{"id": p["id"], "instruction": p["instruction"], "model": model,
                                            "max_new_tokens": 8, "answer": t} for p, t in zip(PROMPTS, ANSWERS_B)])
    with stub_server(judge_reply) as (url, requests):
        rc = cli.main(["compare", model, model, "--prompts", str(prompts), "--judge", "openai:judge-model",
                       "--out", str(out), "generation.backend=transformers", "model.dtype=float32",
                       "sample.max_new_tokens=8", "judge.max_new_tokens=50", f"judge.base_url={url}",
                       "judge.api_key_env=STUB_JUDGE_KEY", "eval.judge_check_pairs=0"])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "[skip] answers of B" in stdout and "judge = openai:judge-model, both orders" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["answers-a.jsonl", "answers-b.jsonl", "compare.json",
                                                    "verdicts.jsonl"]

    # the judge: both orders of 4 pairs, greedy, one verdict each, with the key from the environment
    assert len(requests) == 8
    for r in requests:
        assert r["headers"]["Authorization"] == "Bearer secret-1"
        body = r["body"]
        assert (body["model"], body["n"], body["temperature"], body["max_tokens"]) == ("judge-model", 1, 0.0, 50)
        assert len(body["messages"]) == 1 and "[[A]]" in body["messages"][0]["content"]

    answers_a = read_jsonl(out / "answers-a.jsonl")
    assert [(a["id"], a["instruction"], a["model"], a["max_new_tokens"]) for a in answers_a] == \
        [(p["id"], p["instruction"], model, 8) for p in PROMPTS]
    assert all("GOOD" not in a["answer"] and "BAD" not in a["answer"] for a in answers_a)

    verdicts = read_jsonl(out / "verdicts.jsonl")
    assert [(v["id"], v["verdict_ab"], v["verdict_ba"], v["outcome"]) for v in verdicts] == [
        ("p1", "B", "A", "loss"), ("p2", "B", "A", "loss"), ("p3", "A", "B", "win"), ("p4", None, None, "tie")]
    assert verdicts[3]["raw_ab"] == verdicts[3]["raw_ba"] == "I cannot decide."
    assert [v["answer_b"] for v in verdicts] == ANSWERS_B

    result = json.loads((out / "compare.json").read_text())
    assert (result["a"], result["b"], result["judge"], result["judge_role"], result["prompts"]) == \
        (model, model, "openai:judge-model", "another model", str(prompts))
    assert (result["n"], result["wins"], result["ties"], result["losses"]) == (4, 1, 1, 2)
    assert (result["win_rate"], result["tie_rate"], result["loss_rate"]) == (0.25, 0.25, 0.5)
    assert result["parse_failures"] == 2
    assert result["verdicts"] == {"first": 3, "second": 3, "tie": 0, "unparsed": 2}
    # a server gives no probabilities: generated verdicts, no margin; p1, p2 prefer B, p3 A, in both orders
    assert (result["method"], result["margin"], result["mean_p_a"], result["unreadable"]) == \
        ("generated verdicts", None, None, 1)
    assert result["position_bias"] == {"ab": round(1 / 3, 4), "ba": round(2 / 3, 4)}
    assert result["judge_check"] is None
    assert result["mean_len_b"] == 6.5
    assert result["mean_len_a"] == round(sum(len(a["answer"]) for a in answers_a) / 4, 1)
    lo, hi = result["ci"]["win_rate"]
    assert 0 <= lo <= 0.25 <= hi <= 1
    assert "A wins          1    25.0%" in stdout and "A loses         2    50.0%" in stdout


@pytest.mark.parametrize("args, message", [
    (["--judge", "openai:gpt-x"], "--judge openai:gpt-x needs the server's address: add the override judge.base_url"),
    (["--judge", "openai:"], "--judge openai:MODEL needs the model name the server serves"),
    (["--max-prompts", "0"], "--max-prompts must be at least 1, got 0"),
    (["--prompts", "builtin:nope"], "unknown prompt set 'builtin:nope'"),
    (["judge.base_url=http://x/v1", "judge.api_key_env=sk-123"], "'judge.api_key_env' is the NAME of an environment"),
])
def test_compare_errors_before_any_work(tmp_path, tiny_model_dir, capsys, args, message):
    from selfreward import cli

    model = str(tiny_model_dir)
    out = tmp_path / "cmp"
    assert cli.main(["compare", model, model, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfreward: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
