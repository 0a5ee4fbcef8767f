"""The test head's start: a `ray start` that exits because Ray's fixed 30 s wait for its raylet ran out is started
again with a new temp dir, and what the failed one left is removed; any other failure is raised at once. The `ray
start` processes are stand-ins (a shell that prints what Ray prints), so this runs in a second on any machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cluster import head as head_module
from tests.cluster.head import Head, local_head

TIMED_OUT = "Exception: The current node timed out during startup. This could happen because ..."


def _fake_starts(
    tmp_path: Path, outputs: list[tuple[str, int | None]]
) -> tuple[list[tuple[subprocess.Popen, Head]], object]:
    """A `_start` whose n-th call runs a shell printing outputs[n]'s text and exiting with its code (a code of None:
    it stays up, as `ray start --block` does)."""
    started: list[tuple[subprocess.Popen, Head]] = []

    def fake(*_args: object) -> tuple[subprocess.Popen, Head]:
        text, code = outputs[len(started)]
        temp_dir = tmp_path / f"head{len(started)}"
        temp_dir.mkdir()
        (temp_dir / "auth_token").write_text("a" * 64)
        log = tmp_path / f"head{len(started)}.log"
        script = f"echo {text!r}; " + ("exec sleep 600" if code is None else f"exit {code}")
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", "-c", script], stdout=out, stderr=out, start_new_session=True)
        env = {"RAY_AUTH_TOKEN_PATH": str(temp_dir / "auth_token")}
        token = (temp_dir / "auth_token").read_text()
        started.append((proc, Head("127.0.0.1:1", "", temp_dir, env, token, log)))
        return started[-1]

    return started, fake


def test_a_head_whose_raylet_missed_rays_wait_is_started_again(tmp_path: Path, monkeypatch) -> None:
    started, fake = _fake_starts(tmp_path, [(TIMED_OUT, 1), (TIMED_OUT, 1), ("Ray runtime started.", None)])
    monkeypatch.setattr(head_module, "_start", fake)
    with local_head(dashboard=False, timeout=30) as head:
        assert head.temp_dir == started[2][1].temp_dir and head.token == "a" * 64
        assert started[2][0].poll() is None  # the third start is up
        assert not started[0][1].temp_dir.exists() and not started[1][1].log.exists()  # the failed ones cleaned up
    assert started[2][0].poll() is not None and not started[2][1].temp_dir.exists()


def test_a_head_that_fails_otherwise_or_every_time_is_not_retried_for_ever(tmp_path: Path, monkeypatch) -> None:
    started, fake = _fake_starts(tmp_path, [("Error: port in use", 1)])
    monkeypatch.setattr(head_module, "_start", fake)
    with pytest.raises(RuntimeError, match="port in use"), local_head(dashboard=False, timeout=30):
        pass
    assert len(started) == 1

    started, fake = _fake_starts(tmp_path / "again", [(TIMED_OUT, 1)] * 2)
    (tmp_path / "again").mkdir()
    monkeypatch.setattr(head_module, "_start", fake)
    with pytest.raises(RuntimeError, match="timed out during startup"), local_head(attempts=2, timeout=30):
        pass
    assert len(started) == 2
