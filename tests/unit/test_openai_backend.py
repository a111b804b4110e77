"""The openai backend against a real HTTP server on 127.0.0.1: request body, key header, order, retries, n
fallback, and the one-line errors; plus its config surface."""

from __future__ import annotations

import socket

import pytest

from openai_stub import completion, stub_server
from selfreward.backends import Sampling, make_generator
from selfreward.backends.openai import OpenAIGenerator
from selfreward.config import load_config
from selfreward.errors import UserError

KEY_ENV = "SELFREWARD_TEST_KEY"


def echo(body, index):
    """Choice j of a request answers '<last message> #j', so order and counts can be checked."""
    return 200, completion([f"{body['messages'][-1]['content']} #{j}" for j in range(body["n"])])


def client(url, **kw):
    return OpenAIGenerator("judge-1", url, api_key_env=KEY_ENV, backoff_s=0.001, **kw)


def ask(text):
    return [{"role": "user", "content": text}]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")


def test_request_body_key_and_order(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k-123")
    with stub_server(echo) as (url, requests):
        gen = make_generator("openai", "judge-1", base_url=url + "/", api_key_env=KEY_ENV, parallel=3)
        out = gen.generate([ask(f"q{i}") for i in range(5)], Sampling(n=2, temperature=0.7, top_p=0.9,
                                                                         max_new_tokens=33, seed=5))
        gen.close()
    assert out == [[f"q{i} #0", f"q{i} #1"] for i in range(5)]
    assert len(requests) == 5
    for r in requests:
        assert r["path"] == "/v1/chat/completions"
        assert r["headers"]["Authorization"] == "Bearer k-123"
        assert r["headers"]["Content-Type"] == "application/json"
    bodies = sorted((r["body"] for r in requests), key=lambda b: b["messages"][0]["content"])
    assert bodies[0] == {"model": "judge-1", "messages": [{"role": "user", "content": "q0"}], "n": 2,
                         "temperature": 0.7, "top_p": 0.9, "max_tokens": 33, "seed": 5}


def test_no_key_no_header(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with stub_server(echo) as (url, requests):
        assert client(url).generate([ask("x")], Sampling()) == [["x #0"]]
    assert "Authorization" not in requests[0]["headers"]


def test_greedy_asks_once_and_repeats():
    with stub_server(echo) as (url, requests):
        out = client(url).generate([ask("x")], Sampling(n=3, temperature=0.0))
    assert out == [["x #0"] * 3]
    assert [(r["body"]["n"], r["body"]["temperature"]) for r in requests] == [(1, 0.0)]


def test_fewer_choices_than_asked_are_topped_up():
    """A server that ignores n (one choice per call) is asked again for the rest: n=3, then 2, then 1."""
    with stub_server(lambda body, i: (200, completion([f"c{i}"]))) as (url, requests):
        out = client(url).generate([ask("x")], Sampling(n=3, temperature=1.0))
    assert out == [["c0", "c1", "c2"]]
    assert [r["body"]["n"] for r in requests] == [3, 2, 1]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_then_succeeds(status):
    replies = {0: (status, {"error": {"message": "busy"}}), 1: (status, b"not json")}
    with stub_server(lambda body, i: replies.get(i) or echo(body, i)) as (url, requests):
        assert client(url).generate([ask("x")], Sampling()) == [["x #0"]]
    assert len(requests) == 3


def test_gives_up_after_the_retries():
    with stub_server(lambda body, i: (502, {"error": "bad gateway"})) as (url, requests):
        with pytest.raises(UserError, match=r"chat/completions answered HTTP 502: bad gateway$"):
            client(url).generate([ask("x")], Sampling())
    assert len(requests) == 6  # the first try and 5 retries


def test_unauthorized_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    def reply(body, i):
        return ((401, {"error": {"message": "Incorrect API key provided"}}))
    with stub_server(reply) as (url, requests):
        with pytest.raises(UserError) as e:
            client(url).generate([ask("x")], Sampling())
    assert str(e.value) == (f"{url}/chat/completions refused the request (HTTP 401: Incorrect API key provided); "
                            f"set the environment variable {KEY_ENV} to a valid key")
    assert len(requests) == 1  # no retry: waiting does not fix a key
    monkeypatch.setenv(KEY_ENV, "wrong")
    with stub_server(reply) as (url, _):
        with pytest.raises(UserError, match=f"the key in {KEY_ENV} was rejected"):
            client(url).generate([ask("x")], Sampling())


def test_not_found_and_bad_json():
    with stub_server(lambda body, i: (404, b"")) as (url, _):
        with pytest.raises(UserError, match=r"not found \(HTTP 404\); check base_url .* model name 'judge-1'"):
            client(url).generate([ask("x")], Sampling())
    with stub_server(lambda body, i: (200, b"<html>hello</html>")) as (url, _):
        with pytest.raises(UserError, match=r"did not answer with chat-completions JSON .*<html>hello"):
            client(url).generate([ask("x")], Sampling())
    with stub_server(lambda body, i: (200, {"choices": []})) as (url, _):
        with pytest.raises(UserError, match="answered with no choices for model 'judge-1'"):
            client(url).generate([ask("x")], Sampling())


def test_connection_refused():
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(UserError) as e:
        client(url).generate([ask("x")], Sampling())
    assert str(e.value) == (f"no server at {url}/chat/completions (connection refused); start the "
                            "OpenAI-compatible server or fix base_url")


def test_null_content_is_an_empty_answer():
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}
    with stub_server(lambda body, i: (200, reply)) as (url, _):
        assert client(url).generate([ask("x")], Sampling()) == [[""]]


# --- config surface ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["generation.backend=openai"], "'generation.backend' is openai but no base_url is set"),
    (["judge.backend=openai", "judge.model=gpt-x"], "'judge.backend' is openai but no base_url is set"),
    (["judge.backend=openai", "judge.base_url=http://h/v1"], "'judge.model' is not set"),
    (["judge.base_url=localhost:8000/v1"], "'judge.base_url' must start with http:// or https://"),
    (["generation.api_key_env=sk-abc123"], "'generation.api_key_env' is the NAME of an environment variable"),
    (["judge.backend=gpt"], "'judge.backend' must be one of"),
])
def test_config_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


def test_judge_base_url_falls_back_to_generation():
    cfg = load_config(None, ["judge.backend=openai", "judge.model=gpt-x", "generation.base_url=http://h:1/v1"])
    assert (cfg.judge.base_url, cfg.judge.api_key_env, cfg.generation.api_key_env) == (None, None, "OPENAI_API_KEY")
