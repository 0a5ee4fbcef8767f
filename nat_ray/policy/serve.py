"""A local OpenAI-compatible server for a model folder: ``transformers serve`` on 127.0.0.1, as the README starts it.

    with transformers_serve(model_dir) as base_url:      # http://127.0.0.1:PORT/v1
        ...  # policy: {kind: openai, base_url: ..., model: auto}

``--cb-num-blocks 128`` sizes the continuous-batching KV cache for 32k tokens: without it transformers sizes the cache
as for a GPU, and on a 24 GB CPU machine the server took 14.5 GB.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def serve_command(model: str | Path, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("transformers")  # the CLI of the environment running this code
    where = ["--host", "127.0.0.1", "--port", str(port)]
    return [str(exe), "serve", str(model), *where, "--continuous-batching", "--cb-num-blocks", "128"]


@contextmanager
def transformers_serve(model: str | Path, timeout_s: float = 300.0) -> Iterator[str]:
    """Start the server on a free port, wait until ``/health`` answers, yield its ``/v1`` URL, stop it on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(serve_command(model, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"transformers serve exited (status {proc.returncode})") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"transformers serve did not come up in {timeout_s:.0f} s") from None
                time.sleep(1)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
