"""Starting an embedded Ray cluster: a start whose node does not register in Ray's fixed 30 s is tried again, and
what it left running is killed first. The failing start is scripted (a real one that times out needs a machine
loaded for 30 s); the processes it leaves are real child processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nat_ray.ray_init import start_local

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
