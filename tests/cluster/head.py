"""A real Ray head started with ``ray start --head`` (its own ports and temp dir, so it never touches another Ray
on the machine), stopped on exit whatever happened: the group is sent SIGTERM, and every process still holding the
head's temp dir is killed. ``ray stop`` is not used: it would stop every Ray on the machine, the test session's too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass
class Head:
    gcs: str  # host:port, what `ray start --address` and ray.init take
    dashboard: str  # http://127.0.0.1:PORT, what `ray job submit --address` takes
    temp_dir: Path
    env: dict[str, str]  # the environment to run `ray` CLI commands against this head

    def ray(self, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "ray"), *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(proc: subprocess.Popen, log: Path, dashboard: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if "Ray runtime started" in log.read_text():
            if dashboard is None:
                return
            try:
                urllib.request.urlopen(f"{dashboard}/api/version", timeout=2)
                return
            except urllib.error.HTTPError:  # 401 without a token: it answers, so it is up
                return
            except OSError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"the Ray head did not start in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, temp_dir: Path) -> None:
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    # what SIGTERM left (gcs_server, the monitor, nodes the autoscaler started) all name the head's temp dir
    mine = str(temp_dir)
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.info["pid"] != os.getpid() and mine in " ".join(p.info["cmdline"] or []):
                p.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)


@contextlib.contextmanager
def local_head(
    num_cpus: float = 4,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    dashboard: bool = True,
    timeout: float = 120,
    port: int | None = None,
) -> Iterator[Head]:
    # short: Ray's unix socket paths live under it and must stay under ~107 characters
    temp_dir = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
    log = temp_dir.parent / f"{temp_dir.name}.log"
    port, dash = port or free_port(), free_port()
    full_env = {**os.environ, **(env or {}), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.pop("RAY_ADDRESS", None)
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}"]
    cmd += [f"--temp-dir={temp_dir}", "--disable-usage-stats", f"--ray-client-server-port={free_port()}"]
    cmd += [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}"]
    cmd += [f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
    if dashboard:
        cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}"]
    else:
        cmd += ["--include-dashboard=false"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*cmd, *extra_args], env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    dashboard_url = f"http://127.0.0.1:{dash}" if dashboard else None
    try:
        _wait_up(proc, log, dashboard_url, timeout)
        # the CLI reads the head's token (~/.ray/auth_token) only when told token auth is on
        cli_env = {**full_env, "RAY_AUTH_MODE": "token"}
        yield Head(f"127.0.0.1:{port}", dashboard_url or "", temp_dir, cli_env)
    finally:
        _stop(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        log.unlink(missing_ok=True)
