"""A small HTTP server on 127.0.0.1 that answers like Serper's /search, and whose failures a test scripts."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

from tests.json_http import JSONHandler


def organic(query: str, n: int) -> list[dict]:
    return [
        {"title": f"Result {i} for {query}", "link": f"https://example.org/{i}", "snippet": f"snippet {i}: {query}."}
        for i in range(1, n + 1)
    ]


class FakeSerper:
    """``script``: one step per request — an HTTP status (429 / 500 / 401 ...), ``"slow"`` (answers after
    ``slow_s``, or when the server closes), ``"garbage"`` (a body that is not JSON), ``"empty"`` / ``"list"`` (JSON
    of the wrong shape), ``"none-found"`` (a well-formed answer with no results); then 200 answers."""

    def __init__(self, slow_s: float = 2.0) -> None:
        self.script: list[int | str] = []
        self.slow_s = slow_s
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        # a slow answer waits on this, so closing the server does not wait out its sleeps
        self._closing = threading.Event()
        outer = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                with outer._lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = outer.script.pop(0) if outer.script else 200
                if step == "slow":
                    outer._closing.wait(outer.slow_s)
                    step = 200
                if step == "garbage":
                    self.send_json(200, b"<html>upstream error</html>")
                elif step == "empty":
                    self.send_json(200, b'{"message": "nothing"}')
                elif step == "list":
                    self.send_json(200, b"[]")
                elif step == "none-found":
                    self.send_json(200, json.dumps({"searchParameters": {"q": body["q"]}}).encode())
                elif step == 429:
                    self.send_json(429, b'{"message": "Too many requests"}', {"Retry-After": "0"})
                elif step != 200:
                    self.send_json(int(step), json.dumps({"message": f"scripted {step}"}).encode())
                else:
                    answer = {
                        "searchParameters": {"q": body["q"], "type": "search"},
                        "organic": organic(body["q"], int(body.get("num", 10))),
                    }
                    self.send_json(200, json.dumps(answer).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/search"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSerper:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
