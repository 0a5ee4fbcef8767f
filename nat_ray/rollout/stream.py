"""Episodes streamed through a pool of env-worker actors: the piece the rollout and eval drivers share.

Batches of episode specs go to an elastic pool of env-worker actors (:mod:`actors.env_pool`); each finished batch goes
to a callback (the drivers' exactly-once writers), and every finished episode moves the progress bar as it ends.
Env-worker actors that die are restarted by Ray and their batches run again; the writers drop what they already hold.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from nat_ray.config import RunConfig
from nat_ray.episode import EpisodeSettings, EpisodeSpec
from nat_ray.tools.config import PoolConfig


def steady_rate(
    arrivals: list[tuple[float, int]], lo: float = 0.2, hi: float = 0.9, min_window_s: float = 1.0
) -> float | None:
    """Units/s between 20% and 90% of the total: the pool at speed, without actor start-up, first wave or tail.

    None when the arrivals are too few or too close together to time (everything finishing at once is no rate)."""
    if len(arrivals) < 3:
        return None
    total = arrivals[-1][1]
    start = next(a for a in arrivals if a[1] >= lo * total)
    end = next(a for a in arrivals if a[1] >= hi * total)
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] - start[0] >= min_window_s else None


@dataclass
class StreamStats:
    seconds: float = 0.0
    episodes_at: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, episodes so far)
    calls_at: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, policy calls so far)
    counts: dict[str, int] = field(default_factory=lambda: {"positive": 0, "negative": 0, "error": 0})
    env_workers: dict[str, int] = field(default_factory=dict)  # the pool's started / peak / replaced / stalled


class _EpisodeEvents:
    """Follows the env workers' per-episode events: advances the bar as each episode ends (not as the pool hands
    over a finished batch) and records when each arrived, for rates over real wall time."""

    def __init__(self, events: Any, bar: Any, stats: StreamStats, started: float) -> None:
        self.events, self.bar, self.stats, self.started = events, bar, stats, started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        s = self.stats
        while True:
            try:
                items = [self.events.get(timeout=0.5)]
                items += self.events.get_nowait_batch(self.events.qsize())
            except queue.Empty:
                if self._stop.is_set():  # each episode puts its event before its batch returns: all are in
                    return
                continue
            except Exception:  # the queue actor is gone: the run is ending
                return
            now = time.monotonic() - self.started
            for _task, label, calls in items:
                s.counts[label] = s.counts.get(label, 0) + 1
                s.episodes_at.append((now, (s.episodes_at[-1][1] if s.episodes_at else 0) + 1))
                s.calls_at.append((now, (s.calls_at[-1][1] if s.calls_at else 0) + calls))
            if self.bar.n + len(items) <= self.bar.total:  # an episode run twice (a lost worker) counts once
                self.bar.update(len(items))
            self.bar.set_postfix(pos=s.counts["positive"], neg=s.counts["negative"], err=s.counts["error"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def stream_episodes(
    actors: Any,
    specs: list[EpisodeSpec],
    settings: dict[str, EpisodeSettings],
    on_batch: Callable[[pa.Table], None],
    *,
    env_workers: PoolConfig,
    episodes_per_worker: int,
    batch_size: int,
    bar: Any,
) -> StreamStats:
    """Run ``specs`` on env workers built with ``actors`` (an :class:`actors.session.ActorSession`) and
    ``settings``; hand each finished batch of trajectories to ``on_batch``. Raises what an episode or a worker's
    constructor raises."""
    from actors.env_pool import EnvWorkerPool
    from actors.env_worker import EnvWorker
    from actors.session import ENV_WORKER_CPUS

    # Enough batches per actor that its episode semaphore always has a backlog, and twice that handed to it, so a
    # worker never waits on the driver for its next batch.
    concurrent = max(2, -(-2 * episodes_per_worker // batch_size))
    rows = [s.__dict__ for s in specs]
    batches = [pa.Table.from_pylist(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    pool = EnvWorkerPool(
        EnvWorker,
        {**actors.worker_kwargs(), "settings": settings, "episodes_per_worker": episodes_per_worker},
        min_size=env_workers.min,
        max_size=env_workers.max,
        calls_per_worker=concurrent,
        batches_per_worker=2 * concurrent,
        num_cpus=ENV_WORKER_CPUS,
    )
    stats = StreamStats()
    started = time.monotonic()
    follower = _EpisodeEvents(actors.events, bar, stats, started)
    try:
        pool.run(batches, on_batch)
    finally:
        follower.stop()
        stats.seconds = time.monotonic() - started
        stats.env_workers = dataclasses.asdict(pool.stats)
    return stats


class StreamSection(Protocol):
    """What the rollout and eval config sections share about their env-worker pool."""

    env_workers: PoolConfig
    episodes_per_worker: int
    batch_size: int


def run_episodes(
    cfg: RunConfig,
    section: StreamSection,
    specs: list[EpisodeSpec],
    settings: dict[str, EpisodeSettings],
    on_batch: Callable[[pa.Table], None],
    bar: Any,
) -> tuple[StreamStats, dict]:
    """Start the actors the tasks need (one :class:`actors.session.ActorSession`), stream ``specs`` through them,
    stop them. Returns the stream's timings and the session's counters (tool pools, engines started)."""
    from actors.session import ActorSession

    with ActorSession(
        cfg.tools,
        cfg.policy_section,
        {s.task.tool for s in settings.values()},
        env_workers_min=section.env_workers.min,
        search_cache=cfg.search_cache_path(),
        on_cluster=bool(cfg.ray_address),
    ) as actors:
        try:
            stats = stream_episodes(
                actors,
                specs,
                settings,
                on_batch,
                env_workers=section.env_workers,
                episodes_per_worker=section.episodes_per_worker,
                batch_size=section.batch_size,
                bar=bar,
            )
        finally:
            session = actors.stats()
    return stats, session
