"""The ``transformers serve`` command line and start-up checks (the real server runs in tests/rollout)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nat_ray.policy import serve


def test_the_command_binds_loopback_and_bounds_the_kv_cache() -> None:
    cmd = serve.serve_command("/models/smol", 8123)
    assert cmd[0] == str(Path(sys.executable).with_name("transformers")) and cmd[1:3] == ["serve", "/models/smol"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    assert "--continuous-batching" in cmd and cmd[cmd.index("--cb-num-blocks") + 1] == "128"


def test_a_server_that_exits_is_an_error_not_a_hang(monkeypatch) -> None:
    monkeypatch.setattr(serve, "serve_command", lambda model, port: [sys.executable, "-c", "raise SystemExit(3)"])
    starting = serve.transformers_serve("/nowhere", timeout_s=30)
    with pytest.raises(RuntimeError, match=r"transformers serve exited \(status 3\)"):
        starting.__enter__()
