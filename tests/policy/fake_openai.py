"""A small OpenAI-format HTTP server on 127.0.0.1 whose replies a test scripts (statuses, delays, bodies)."""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

from tests.json_http import JSONHandler


class FakeOpenAI:
    def __init__(self, model: str = "fake-model") -> None:
        self.model = model
        self.script: list[int | str] = []  # per request: an HTTP status, "garbage", or consumed -> 200 with `reply`
        self.reply = "Action: finish[5]"
        self.delay_s = 0.0
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                self.send_json(
                    200, {"object": "list", "data": [{"id": outer.model, "object": "model", "owned_by": "x"}]}
                )

            def do_POST(self) -> None:
                body = self.read_json()
                with outer._lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = outer.script.pop(0) if outer.script else 200
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    time.sleep(outer.delay_s)
                    if step == "garbage":
                        self.send_json(200, b"{not json")
                    elif step != 200:
                        self.send_json(int(step), {"error": {"message": f"scripted {step}", "type": "x"}})
                    else:
                        self.send_json(200, outer.completion(body))
                finally:
                    with outer._lock:
                        outer.active -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def completion(self, body: dict) -> dict:
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": self.reply}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
