"""A real HTTP server on 127.0.0.1 that speaks the chat-completions route, for testing the openai backend.

It records every request (path, headers, JSON body) and answers each from `reply(body, index)`, a function the
test gives: it returns (status, payload) with payload a dict (sent as JSON) or bytes (sent as they are).
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(texts: list[str]) -> dict:
    return {"object": "chat.completion", "choices": [
        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
        for i, t in enumerate(texts)]}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            index = len(server.requests)
            server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, payload = server.reply(body, index)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def stub_server(reply):
    """Yields (base_url, requests): base_url ends in /v1; requests fills as the server is called."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.reply, server.requests, server.lock = reply, [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)  # quick shutdown
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
