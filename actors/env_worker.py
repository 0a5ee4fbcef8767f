"""The environment worker: an actor that runs many episodes concurrently (asyncio).

The env-worker pool (:mod:`actors.env_pool`) gives it batches of episode specs; several batches are in flight per
actor, and all their episodes share one semaphore (``episodes_per_worker``), so a slot freed by a short episode is
refilled at once from any batch. It is built from plain values resolved once (an
:class:`~nat_ray.episode.EpisodeSettings` per task, the policy config, the *names* of the tool pools, engines and
progress queue), so a restart after a lost node rebuilds it from its creation spec alone; a worker may serve several
tasks (an eval over many data sets).
"""

from __future__ import annotations

import asyncio
import contextlib

import pyarrow as pa
import ray

from actors.pool import PoolClient
from nat_ray.config import PolicyConfig
from nat_ray.episode import EpisodeRunner, EpisodeSettings, EpisodeSpec
from nat_ray.policy import build_policy
from nat_ray.storage import trajectories_table
from nat_ray.tools.base import Tool
from nat_ray.tools.replay import ReplaySearch


class EnvWorker:
    def __init__(
        self,
        settings: dict[str, EpisodeSettings],
        policy: PolicyConfig,
        tool_pools: dict[str, str],
        engines: list[str],
        episodes_per_worker: int,
        replay_search: str | None = None,
        progress: str | None = None,
    ) -> None:
        handles = [ray.get_actor(name) for name in engines]
        tools: dict[str, Tool] = {name: PoolClient(ray.get_actor(pool)) for name, pool in tool_pools.items()}
        if replay_search is not None:  # a scripted environment, local to each worker
            tools["search"] = ReplaySearch(replay_search)
        self.runners = {}
        for task, s in settings.items():
            own = {name: tool for name, tool in tools.items() if name == s.task.tool}
            self.runners[task] = EpisodeRunner(s, build_policy(policy, s.template, handles), own)
        self.slots = asyncio.Semaphore(episodes_per_worker)
        # a ray.util.queue.Queue's actor: one event per finished episode, for the driver's bar
        self.progress = ray.get_actor(progress) if progress is not None else None

    async def _one(self, spec: EpisodeSpec):
        async with self.slots:
            trajectory = await self.runners[spec.task].run(spec)
        if self.progress is not None:
            calls = sum(t.role == "assistant" for t in trajectory.turns) + trajectory.action_errors
            with contextlib.suppress(Exception):  # progress never costs an episode
                await self.progress.put.remote((spec.task, trajectory.label.value, calls))
        return trajectory

    async def run_batch(self, batch: pa.Table) -> pa.Table:
        specs = [EpisodeSpec(**row) for row in batch.to_pylist()]
        return trajectories_table(await asyncio.gather(*(self._one(s) for s in specs)))
