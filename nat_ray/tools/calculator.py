"""The ``calculate[expr]`` tool: the paper's SymPy calculator, made safe for untrusted input.

Static safety (no eval, whitelisted syntax, size bounds) lives in :mod:`nat_ray.tools.safe_sympy`. The hard per-call
timeout lives here: evaluation runs in a worker subprocess that is killed and replaced when a call overruns. Signals
(``SIGALRM``) would not do: they only reach the main thread, cannot interrupt long C-level big-integer arithmetic,
and Ray actors run their methods on other threads.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from nat_ray.tools import safe_sympy

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


# What the worker needs from the parent's environment: the interpreter's own settings and the locale. Nothing else
# reaches it (an env worker's environment holds the policy's and the search API's keys, and a worker evaluates input
# a model wrote).
_WORKER_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONHOME", "PYTHONPATH", "OMP_NUM_THREADS",
               "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # fmt: skip


def worker_env(parent: Mapping[str, str]) -> dict[str, str]:
    """The calculator worker's environment: the allowed variables of ``parent``, this package on its path."""
    env = {k: parent[k] for k in _WORKER_ENV if k in parent}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class Calculator:
    """Evaluate expressions with a hard wall-clock timeout per call. Thread-safe; never raises on bad input.

    ``isolate=False`` evaluates in-process (static bounds only, no timeout): for trusted input and measurements.
    """

    name = "calculate"

    def __init__(
        self,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        isolate: bool = True,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.isolate = isolate
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        self.kills = 0  # workers killed after a timeout or a crash

    def __call__(self, expression: str) -> str:
        if not isinstance(expression, str):
            return "Error: expression must be a string"
        if not self.isolate:
            return safe_sympy.evaluate(expression)
        # Cheap rejections need no round trip to the worker.
        if len(expression) > safe_sympy.DEFAULT_LIMITS.max_chars:
            return f"Error: expression too long ({len(expression)} characters)"
        with self._lock:
            return self._call_worker(expression)

    def _call_worker(self, expression: str) -> str:
        try:
            proc = self._ensure_worker()
        except OSError as exc:
            return f"Error: calculator unavailable: {exc}"
        except TimeoutError:
            self._kill()
            return "Error: calculator did not start in time"
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"expression": expression}).encode() + b"\n")
            proc.stdin.flush()
            reply = self._read_line(proc, time.monotonic() + self.timeout_s)
        except TimeoutError:
            self._kill()
            self.kills += 1
            return f"Error: calculation timed out after {self.timeout_s:g}s"
        except (OSError, EOFError):
            self._kill()
            self.kills += 1
            return "Error: calculator worker crashed"
        return json.loads(reply)["observation"]

    def _ensure_worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._kill()
        env = worker_env(os.environ)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "nat_ray.tools._calc_worker", "--memory-mb", str(self.memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._buffer = b""
        ready = self._read_line(self._proc, time.monotonic() + self.startup_timeout_s)
        if not json.loads(ready).get("ready"):
            raise OSError("calculator worker sent an unexpected greeting")
        return self._proc

    def _read_line(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise TimeoutError
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        self._buffer = b""
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        with self._lock:
            self._kill()

    def __enter__(self) -> Calculator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


_default: Calculator | None = None
_default_lock = threading.Lock()


def calculate(expression: str) -> str:
    """Module-level convenience: one shared isolated :class:`Calculator` per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Calculator()
    return _default(expression)
