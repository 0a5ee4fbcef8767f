"""The env-worker pool on a real local Ray cluster: grows to max under a backlog and back to min, puts a killed
worker's batches back, surfaces a constructor's error, and starts its workers without Ray's constructor-argument
error line (ray-project/ray#53727) that Ray Data's actor pool printed for every worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ERROR_LINE = re.compile(r"\[[\d\- :,.]+ E \d+ \d+\]|\bERROR\b")


class Doubler:
    """A worker shaped like EnvWorker: async, a batch of rows in, a table out."""

    def __init__(self, delay_s: float, fail: bool = False) -> None:
        if fail:
            raise ValueError("bad worker setting: delay_s")
        self.delay_s = delay_s

    async def run_batch(self, batch: pa.Table) -> pa.Table:
        await asyncio.sleep(self.delay_s)
        return pa.table({"x": [2 * x for x in batch.column("x").to_pylist()], "pid": [os.getpid()] * batch.num_rows})


def _batches(n: int, size: int = 2) -> list[pa.Table]:
    return [pa.table({"x": list(range(i, i + size))}) for i in range(0, n * size, size)]


def _pool(**kw):  # type: ignore[no-untyped-def]
    from actors.env_pool import EnvWorkerPool

    args = {"min_size": 1, "max_size": 3, "calls_per_worker": 2, "batches_per_worker": 2, "num_cpus": 0.1}
    return EnvWorkerPool(Doubler, {"delay_s": kw.pop("delay_s", 0.3), **kw.pop("kwargs", {})}, **{**args, **kw})


def test_grows_to_max_under_a_backlog_and_returns_each_batch_once(ray_local) -> None:
    pool = _pool()
    out: list[pa.Table] = []
    pool.run(_batches(30), out.append)
    xs = sorted(x for t in out for x in t.column("x").to_pylist())
    assert xs == [2 * i for i in range(60)]
    assert pool.stats.peak == 3 and pool.stats.replaced == 0
    assert len({p for t in out for p in t.column("pid").to_pylist()}) == 3  # the work was spread over all three
    assert pool.workers == []  # all let go at the end


def test_a_killed_worker_is_replaced_and_its_batches_run_again(ray_local) -> None:
    ray = ray_local
    pool = _pool(min_size=2, max_size=2, delay_s=0.5)
    out: list[pa.Table] = []
    killed: list[object] = []

    def on_batch(t: pa.Table) -> None:
        out.append(t)
        if len(out) == 2 and not killed:  # gone for good (ray.kill: no restart), with batches in flight
            killed.append(pool.workers[0].handle)
            ray.kill(pool.workers[0].handle, no_restart=True)

    pool.run(_batches(16), on_batch)
    assert killed and pool.stats.replaced == 1
    xs = sorted(x for t in out for x in t.column("x").to_pylist())
    assert xs == [2 * i for i in range(32)]  # every batch once, those of the killed worker run again


class Hanger(Doubler):
    """The first worker hangs on every batch (alive and idle, as the 12-06 eval did); its replacement does not."""

    def __init__(self, delay_s: float, flag: str) -> None:
        super().__init__(delay_s)
        self.flag, self.hung = flag, False

    async def run_batch(self, batch: pa.Table) -> pa.Table:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL))
            self.hung = True
        if self.hung:
            await asyncio.sleep(3600)
        return await super().run_batch(batch)


def test_a_hung_worker_is_replaced_and_its_batches_run_again(ray_local, tmp_path: Path) -> None:
    from actors.env_pool import EnvWorkerPool

    args = {"min_size": 1, "max_size": 1, "calls_per_worker": 2, "batches_per_worker": 2, "num_cpus": 0.1}
    pool = EnvWorkerPool(Hanger, {"delay_s": 0.1, "flag": str(tmp_path / "hung")}, **args, stall_s=3.0)
    out: list[pa.Table] = []
    pool.run(_batches(6), out.append)
    assert pool.stats.stalled == 1 and pool.stats.replaced == 1 and pool.stall_s == 6.0
    xs = sorted(x for t in out for x in t.column("x").to_pylist())
    assert xs == [2 * i for i in range(12)]  # every batch once, the hung worker's two run again


def test_a_constructor_error_ends_the_run_with_it(ray_local) -> None:
    from ray.exceptions import RayActorError

    pool = _pool(kwargs={"fail": True})
    with pytest.raises(RayActorError, match="bad worker setting: delay_s"):
        pool.run(_batches(4), lambda t: None)
    assert pool.workers == []


def test_a_healthy_rollout_logs_no_error_level_line(tmp_path: Path) -> None:
    """The CLI as a user runs it (its own embedded cluster, Ray's worker logs forwarded to the terminal)."""
    home = tmp_path / "home"
    home.mkdir()
    cmd = [sys.executable, "-m", "nat_ray.cli", "rollout", "--no-progress"]
    cmd += ["--config", str(REPO / "configs/ci_rollout_gsm8k_scripted.yaml"), f"out={tmp_path}", "rollout.limit=6"]
    cmd += ["rollout.env_workers={min: 2, max: 3}", "rollout.batch_size=2"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"HOME": str(home)}  # its own cluster
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"complete": true' in r.stdout
    assert not ERROR_LINE.findall(r.stderr), r.stderr[-3000:]
