"""The env-worker pool: batches of episode specs in, each finished batch out as it ends; elastic between min and max.

Why not Ray Data's actor pool (``map_batches`` with ``ActorPoolStrategy``), which ran env workers before: Ray Data hands
its actors their constructor arguments (the UDF and its data context) through the object store, and with restarts on
(``max_restarts=-1``, what a lost node needs) Ray logs an error-level line for every such actor — a restart fails if
those objects are lost (ray-project/ray#53727). An env worker here is built from plain values only (settings, the
policy config, actor *names*), so Ray rebuilds it from its own creation spec after its process or node is lost, its
in-flight calls are retried (``max_task_retries=-1``), and nothing needs to say so.

Scaling, as Ray Data's pool did: ``min`` workers start at once; while batches wait beyond what the started and starting
workers hold, another starts, up to ``max`` (on a cluster, a worker that cannot be placed is the resource request the
autoscaler adds a node for); batches go only to workers that have started, so one that never can holds no work; a
worker with nothing in flight and nothing left to take is let go, down to ``min``. A worker gone for good (``ray.kill``,
restarts exhausted) has its batches put back and is replaced; one whose constructor raised ends the run with that error.
A worker that holds batches but has finished none for ``stall_s`` is taken as hung (alive, idle, its awaits never
answered: an eval of the 12-06 session stopped so for 27 minutes with every actor idle) and replaced the same way:
a hang costs those batches' time, not the run.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import RayActorError


@dataclass
class _Worker:
    handle: Any
    ready_ref: Any | None  # None once it has started
    inflight: set = field(default_factory=set)
    progress_at: float = field(default_factory=time.monotonic)  # when it last finished a batch, or was handed one idle


@dataclass
class PoolStats:
    started: int = 0
    peak: int = 0
    replaced: int = 0
    stalled: int = 0  # of those replaced: hung with batches in flight


class EnvWorkerPool:
    def __init__(
        self,
        worker_cls: type,
        worker_kwargs: dict,
        *,
        min_size: int,
        max_size: int,
        calls_per_worker: int,
        batches_per_worker: int,
        num_cpus: float,
        stall_s: float = 900.0,
    ) -> None:
        self._remote = ray.remote(
            num_cpus=num_cpus, max_restarts=-1, max_task_retries=-1, max_concurrency=calls_per_worker
        )(worker_cls)
        self.kwargs = worker_kwargs
        self.min_size, self.max_size = min_size, max_size
        self.cap = batches_per_worker  # batches handed to one worker at once: its running calls and a backlog
        self.stall_s = stall_s
        self.workers: list[_Worker] = []
        self.stats = PoolStats()

    def _start(self) -> None:
        handle = self._remote.remote(**self.kwargs)
        self.workers.append(_Worker(handle, handle.__ray_ready__.remote()))
        self.stats.started += 1
        self.stats.peak = max(self.stats.peak, len(self.workers))

    def _drop(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        with contextlib.suppress(Exception):  # half-alive (an unreachable node) or already gone: make sure it is gone
            ray.kill(worker.handle)

    def run(self, batches: list[pa.Table], on_batch: Callable[[pa.Table], None], tick_s: float = 1.0) -> None:
        """Run every batch through ``worker_cls.run_batch`` once and hand each result to ``on_batch`` as it ends."""
        waiting = deque(range(len(batches)))
        owner: dict[Any, tuple[_Worker, int]] = {}  # in-flight call -> (worker, batch index)
        try:
            for _ in range(self.min_size):
                self._start()
            while waiting or owner:
                for w in self.workers:
                    while w.ready_ref is None and waiting and len(w.inflight) < self.cap:
                        if not w.inflight:
                            w.progress_at = time.monotonic()
                        i = waiting.popleft()
                        ref = w.handle.run_batch.remote(batches[i])
                        w.inflight.add(ref)
                        owner[ref] = (w, i)
                starting = sum(w.ready_ref is not None for w in self.workers)
                while len(waiting) > starting * self.cap and len(self.workers) < self.max_size:
                    self._start()
                    starting += 1
                readies = {w.ready_ref: w for w in self.workers if w.ready_ref is not None}
                done, _ = ray.wait([*owner, *readies], num_returns=1, timeout=tick_s)
                for ref in done:
                    if ref in readies:
                        self._started(readies[ref], ref)
                    else:
                        self._finished(ref, owner, waiting, on_batch)
                self._replace_stalled(owner, waiting)
                if not waiting:
                    for w in [w for w in self.workers if not w.inflight and w.ready_ref is None]:
                        if len(self.workers) > self.min_size:
                            self._drop(w)
        finally:
            for w in list(self.workers):
                self._drop(w)

    def _replace_stalled(self, owner: dict[Any, tuple[_Worker, int]], waiting: deque) -> None:
        now = time.monotonic()
        for w in [w for w in self.workers if w.inflight and now - w.progress_at > self.stall_s]:
            print(
                f"env-worker pool: a worker finished none of its {len(w.inflight)} batches in {self.stall_s:g} s: "
                "replaced, its batches run again",
                file=sys.stderr,
                flush=True,
            )
            self._put_back(w, owner, waiting)
            self.stats.replaced += 1
            self.stats.stalled += 1
            self.stall_s *= 2  # batches that are only slow are not cut again and again

    def _put_back(self, worker: _Worker, owner: dict[Any, tuple[_Worker, int]], waiting: deque) -> None:
        """A worker gone or hung: its batches go back to the queue, and it is let go (killed if still there)."""
        for ref in list(worker.inflight):
            waiting.appendleft(owner.pop(ref)[1])
        worker.inflight.clear()
        if worker in self.workers:
            self._drop(worker)

    def _started(self, worker: _Worker, ref: Any) -> None:
        try:
            ray.get(ref)
            worker.ready_ref = None
        except RayActorError as exc:
            if exc.actor_init_failed:  # its constructor raised: a config or code error, the same for every worker
                raise
            self._drop(worker)  # gone before it started (killed, node lost for good): start another
            self.stats.replaced += 1
            self._start()

    def _finished(
        self,
        ref: Any,
        owner: dict[Any, tuple[_Worker, int]],
        waiting: deque,
        on_batch: Callable[[pa.Table], None],
    ) -> None:
        worker, i = owner.pop(ref)
        worker.inflight.discard(ref)
        try:
            table = ray.get(ref)
        except RayActorError:
            # gone for good (a lost node is restarted in place, not seen here): its calls go back to the queue; the
            # writers keep each episode once if part of the batch was already written
            waiting.appendleft(i)
            if worker in self.workers:
                self.stats.replaced += 1
            self._put_back(worker, owner, waiting)
            return
        worker.progress_at = time.monotonic()
        on_batch(table)
