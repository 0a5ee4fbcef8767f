"""Starting an embedded Ray cluster: a start whose node does not register in Ray's fixed 30 s is tried again, and
what it left running is killed first. The failing start is scripted (a real one that times out needs a machine
loaded for 30 s); the processes it leaves are real child processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from nat_ray.errors import InputError
from nat_ray.ray_init import init_ray, private_token_file, start_local

TIMED_OUT = (
    "The current node timed out during startup. This could happen because some of the raylet failed to startup or "
    "the GCS has become overloaded."
)  # Ray 2.60's message (ray/_private/node.py)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_start_that_timed_out_is_cleaned_up_and_tried_again(capsys) -> None:
    kept = _sleeper()  # a child of the driver from before: not the start's to kill
    left: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        if not left:
            left.append(_sleeper())  # as a GCS or raylet the failed start left running
            raise Exception(TIMED_OUT)

    try:
        start_local(start)
        assert left[0].wait(timeout=10) != 0  # killed
        assert kept.poll() is None
        assert "ray: the local cluster did not start (The current node timed out" in capsys.readouterr().err
    finally:
        kept.kill()
        for p in left:
            p.kill()


def test_other_failures_and_a_second_timeout_are_raised() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad address")

    with pytest.raises(ValueError, match="bad address"):
        start_local(broken)
    assert len(calls) == 1  # not retried

    def always_late() -> None:
        calls.append(1)
        raise Exception(TIMED_OUT)

    with pytest.raises(Exception, match="timed out during startup"):
        start_local(always_late)
    assert len(calls) == 3


_OPENS = """
import json, os, psutil, ray
from nat_ray.ray_init import init_ray
init_ray()  # as every stage driver starts its embedded cluster

@ray.remote
def pid() -> int:
    return os.getpid()

ray.get(pid.remote())  # a worker process is up, with its own server
me = psutil.Process()
pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
listening = []
for c in psutil.net_connections("inet"):
    if c.status == psutil.CONN_LISTEN and c.pid in pids:
        try:
            name = psutil.Process(c.pid).name()
        except psutil.NoSuchProcess:
            continue
        listening.append([c.laddr.ip, c.laddr.port, name])
print(json.dumps(listening))
"""
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.slow
def test_an_embedded_cluster_is_its_owners_alone(tmp_path) -> None:
    """What an embedded start opens: the token file 0600, every listening socket on loopback (GCS, raylet, workers,
    agents, metrics), and Ray's warning about the token not printed."""
    home = tmp_path / "home"
    home.mkdir()
    env = os.environ | {"HOME": str(home)}  # as the quickstart starts it: an empty home, no token yet
    r = subprocess.run([sys.executable, "-c", _OPENS], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    listening = json.loads(r.stdout.splitlines()[-1])
    names = {name for _, _, name in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # the test sees the node's servers
    assert [s for s in listening if s[0] not in LOOPBACK] == [], listening
    assert "Token authentication" not in r.stderr


def test_a_token_file_readable_by_others_is_made_private(tmp_path, monkeypatch) -> None:
    token = tmp_path / "auth_token"
    token.write_text("t" * 64)
    token.chmod(0o644)  # as Ray's own `ray get-auth-token --generate` leaves it
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert private_token_file() == token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == "t" * 64


@pytest.mark.parametrize("mode", ["disabled", "none", ""])
def test_authentication_off_is_refused_in_one_line(mode: str, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", mode)
    with pytest.raises(InputError, match="nat_ray runs Ray with token authentication only") as err:
        init_ray("local")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        start_local(lambda: None)
