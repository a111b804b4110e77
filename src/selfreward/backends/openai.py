"""OpenAI-compatible chat-completions backend (OpenAI, vLLM, llama.cpp server, TGI...), standard library only.

`model_path` is the model name the server serves. The API key is read from the environment variable named by
`api_key_env`, so no key ever sits in a config file or a run directory. Requests run a bounded number at a time;
429 and 5xx answers and timeouts are retried with exponential backoff; anything that retrying cannot fix (no
server, a rejected key, an unknown route, an answer that is not chat-completions JSON) is a UserError that names
the URL and what to do.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm.auto import tqdm

from selfreward.backends import (
    GENERATE,
    LOGPROBS,
    OPTION_PROBS,
    Completion,
    Message,
    Sampling,
    stop_end,
    texts,
    unsupported,
)
from selfreward.errors import UserError

TIMEOUT_S = 300.0  # one long answer from a busy server can take minutes
RETRIES = 5
MAX_WAIT_S = 60.0


class OpenAIGenerator:
    capabilities = frozenset({GENERATE})

    def __init__(self, model_path: str, base_url: str, api_key_env: str | None = None, parallel: int = 8,
                 timeout_s: float = TIMEOUT_S, backoff_s: float = 1.0):
        self.model = model_path
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.parallel = max(1, parallel)
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        return texts(self.complete(requests, sampling, desc))

    def complete(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[Completion]]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        results: list[list[Completion] | None] = [None] * len(requests)
        with ThreadPoolExecutor(self.parallel) as pool, \
                tqdm(total=len(requests), desc=desc or "generate", unit="req", dynamic_ncols=True) as bar:
            futures = {pool.submit(self._complete, msgs, sampling, key): i for i, msgs in enumerate(requests)}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return results  # type: ignore[return-value]

    def _complete(self, messages: list[Message], sampling: Sampling, key: str | None) -> list[Completion]:
        """sampling.n completions; a server that returns fewer choices than asked is asked again for the rest."""
        # Greedy decoding gives the same text n times: ask once and repeat it, as the transformers backend does.
        want = sampling.n if sampling.temperature > 0 else 1
        got: list[Completion] = []
        while len(got) < want:
            choices = self._post(self._body(messages, sampling, want - len(got)), key)
            if not choices:
                raise UserError(f"{self.url} answered with no choices for model '{self.model}'; check the model "
                                "name and the server's log")
            got += choices[:want - len(got)]
        return [_stopped(c, sampling.stop) for c in got] * (sampling.n // want)

    # sampling.stop is not sent: the API takes at most 4 stop strings, drops the one it stopped at from the text and
    # does not say which it was (finish_reason "stop" is also the end of the turn), so the text could not be kept
    # up to and including it. The stops are applied to the returned text instead (`_stopped`): the same texts as
    # the other backends give, without the server-side saving.
    def _body(self, messages: list[Message], sampling: Sampling, n: int) -> dict:
        return {"model": self.model, "messages": messages, "n": n, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "seed": sampling.seed}

    def _post(self, body: dict, key: str | None) -> list[Completion]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return self._choices(response.read())
            except urllib.error.HTTPError as e:
                if e.code != 429 and e.code < 500 or attempt == RETRIES:
                    raise self._http_error(e, key) from None
                wait = _retry_after(e) or self.backoff_s * 2 ** attempt
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, ConnectionRefusedError):
                    raise UserError(f"no server at {self.url} (connection refused); start the OpenAI-compatible "
                                    "server or fix base_url") from None
                if not isinstance(reason, (TimeoutError, ConnectionError, http.client.HTTPException)) \
                        or attempt == RETRIES:
                    raise UserError(f"cannot reach {self.url}: {reason}; check base_url and the network") from None
                wait = self.backoff_s * 2 ** attempt
            time.sleep(min(wait, MAX_WAIT_S))
        raise AssertionError("unreachable")

    def _choices(self, raw: bytes) -> list[Completion]:
        try:
            choices = sorted(json.loads(raw)["choices"], key=lambda c: c.get("index", 0))
            # content is null for a refusal or a tool call: an empty answer, which the judge parsers count
            return [Completion((c["message"]["content"] or "").strip(), c.get("finish_reason") != "length")
                    for c in choices]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{self.url} did not answer with chat-completions JSON (got {raw[:120]!r}); "
                            "base_url must be the API root, usually ending in /v1") from None

    def _http_error(self, e: urllib.error.HTTPError, key: str | None) -> UserError:
        detail = _error_message(e)
        if e.code in (401, 403):
            fix = (f"set the environment variable {self.api_key_env} to a valid key" if not key
                   else f"the key in {self.api_key_env} was rejected; check it")
            return UserError(f"{self.url} refused the request (HTTP {e.code}{detail}); {fix}")
        if e.code == 404:
            return UserError(f"{self.url} not found (HTTP 404{detail}); check base_url (usually ending in /v1) "
                             f"and the model name '{self.model}'")
        return UserError(f"{self.url} answered HTTP {e.code}{detail}")

    def option_probs(self, requests, prefixes, options, desc=""):
        raise unsupported("openai", OPTION_PROBS)

    def logprobs(self, requests, continuations, desc=""):
        raise unsupported("openai", LOGPROBS)

    def close(self) -> None:
        pass  # nothing held between calls: each generate() opens and closes its own threads


def _stopped(c: Completion, stop: tuple[str, ...]) -> Completion:
    end = stop_end(c.text, stop)
    return c if end is None else Completion(c.text[:end].strip(), True)


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    try:
        return float(e.headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None


def _error_message(e: urllib.error.HTTPError) -> str:
    """': <the server's own error message>' where it gave one, else ''."""
    try:
        body = json.loads(e.read())
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error")
    except Exception:  # any body at all: the status code alone still says what went wrong
        return ""
    return f": {str(message)[:200]}" if message else ""
