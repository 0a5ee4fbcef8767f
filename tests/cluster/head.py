"""A real Ray head started with ``ray start --head`` (its own ports and temp dir, so it never touches another Ray
on the machine), stopped on exit whatever happened: the group is sent SIGTERM, and every process still holding the
head's temp dir is killed. ``ray stop`` is not used: it would stop every Ray on the machine, the test session's too.

It starts as cluster/README.md documents, with token authentication on (``RAY_AUTH_MODE=token``), and with a token
of its own in its temp dir (``RAY_AUTH_TOKEN_PATH``), never ``~/.ray/auth_token``: the head, the nodes its
autoscaler starts and every client run with ``Head.env`` use it; a client without it is refused.
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

from nat_ray.ray_init import START_TIMED_OUT, private_token_env

VENV_BIN = Path(sys.executable).parent


@dataclass
class Head:
    gcs: str  # host:port, what `ray start --address` and ray.init take
    dashboard: str  # http://127.0.0.1:PORT, what `ray job submit --address` takes
    temp_dir: Path
    env: dict[str, str]  # the environment to run `ray` CLI commands (and drivers) against this head: its token
    token: str  # to check that it appears in no output
    log: Path  # what `ray start` printed

    def assert_token_absent(self, *places: Path | str) -> int:
        """The token is in none of the files under the head's temp dir (its session logs), its start log, the
        folders or files given, and the texts given (command outputs); returns how many files were read."""
        files = [f for f in self.temp_dir.rglob("*") if f.is_file() and f.name != "auth_token"] + [self.log]
        texts = []
        for place in places:
            if isinstance(place, Path):
                files += [place] if place.is_file() else [f for f in place.rglob("*") if f.is_file()]
            else:
                texts.append(place)
        secret = self.token.encode()
        leaked = [str(f) for f in files if secret in _read(f)] + [t[:200] for t in texts if self.token in t]
        assert not leaked, f"the cluster's token was written to: {leaked}"
        return len(files)

    def ray(self, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "ray"), *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # a log rotated or a temp file removed while the head runs
        return b""


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


def _discard(proc: subprocess.Popen, head: Head) -> None:
    _stop(proc, head.temp_dir)
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    head.log.unlink(missing_ok=True)


def _start(
    num_cpus: float, env: dict[str, str] | None, extra_args: tuple[str, ...], dashboard: bool, port: int | None
) -> tuple[subprocess.Popen, Head]:
    """``ray start --head`` launched (not waited for) with its own temp dir, ports and token: the process and the
    head it will be."""
    # short: Ray's unix socket paths live under it and must stay under ~107 characters
    temp_dir = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
    log = temp_dir.parent / f"{temp_dir.name}.log"
    port, dash = port or free_port(), free_port()
    auth = private_token_env(temp_dir)
    full_env = {**os.environ, **(env or {}), **auth, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.pop("RAY_ADDRESS", None)
    full_env.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the head's own token file
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
    token = Path(auth["RAY_AUTH_TOKEN_PATH"]).read_text()
    dashboard_url = f"http://127.0.0.1:{dash}" if dashboard else ""
    return proc, Head(f"127.0.0.1:{port}", dashboard_url, temp_dir, full_env, token, log)


@contextlib.contextmanager
def local_head(
    num_cpus: float = 4,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    dashboard: bool = True,
    timeout: float = 300,  # leaves as soon as the head is up; the margin is for a loaded CI machine
    port: int | None = None,
    attempts: int = 3,
) -> Iterator[Head]:
    """Started again (a new temp dir, ports and token) when Ray's own fixed 30 s wait for the head's raylet to
    register runs out: on a 2-core CI machine the other pytest worker's training can starve a new GCS that long. The
    product's embedded start does the same (``nat_ray.ray_init.start_local``)."""
    for attempt in range(1, attempts + 1):
        proc, head = _start(num_cpus, env, extra_args, dashboard, port)
        try:
            _wait_up(proc, head.log, head.dashboard or None, timeout)
            break
        except RuntimeError as exc:
            _discard(proc, head)
            if attempt == attempts or START_TIMED_OUT not in str(exc):
                raise
            print(f"the Ray head did not start (attempt {attempt} of {attempts}); starting it again", file=sys.stderr)
        except BaseException:
            _discard(proc, head)
            raise
    try:
        yield head
    finally:
        _discard(proc, head)
