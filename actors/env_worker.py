"""The environment worker: a Ray Data actor that runs many episodes concurrently (asyncio).

Ray Data gives it batches of episode specs; several batches are in flight per actor, and all their episodes share one
semaphore (``episodes_per_worker``), so a slot freed by a short episode is refilled at once from any batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pyarrow as pa
import ray

from actors.pool import PoolClient
from nat_ray.config import RunConfig
from nat_ray.policy import build_policy
from nat_ray.prompts import get_template
from nat_ray.rollout.episode import EpisodeRunner, EpisodeSpec
from nat_ray.rollout.plan import prompts_path, source_tag
from nat_ray.storage import trajectories_table
from nat_ray.tasks import get_task
from nat_ray.tools.replay import ReplaySearch


class EnvWorker:
    def __init__(
        self, config: dict, tool_pools: dict[str, str], engines: list[str], progress: Any | None = None
    ) -> None:
        cfg = RunConfig.model_validate(config)
        assert cfg.rollout is not None and cfg.policy is not None
        task = get_task(cfg.rollout.task)
        template = get_template(prompts_path(cfg), cfg.rollout.template)
        policy = build_policy(cfg.policy, template, [ray.get_actor(name) for name in engines])
        tools = {name: PoolClient(ray.get_actor(pool)) for name, pool in tool_pools.items()}
        search = cfg.tools.search
        if search is not None and search.kind == "replay":  # a scripted environment, local to each worker
            assert search.replay_from is not None
            tools["search"] = ReplaySearch(search.replay_from)
        self.runner = EpisodeRunner(
            task=task,
            template=template,
            policy=policy,
            tools=tools,
            source=source_tag(cfg),
            max_turns=cfg.rollout.max_turns,
            max_tokens=cfg.policy.max_tokens,
            max_attempts=cfg.rollout.max_episode_attempts,
        )
        self.slots = asyncio.Semaphore(cfg.rollout.episodes_per_worker)
        self.progress = progress  # a ray.util.queue.Queue: one event per finished episode, for the driver's bar

    async def _one(self, spec: EpisodeSpec):
        async with self.slots:
            trajectory = await self.runner.run(spec)
        if self.progress is not None:
            calls = sum(t.role == "assistant" for t in trajectory.turns) + trajectory.action_errors
            with contextlib.suppress(Exception):  # progress never costs an episode
                await self.progress.put_async((trajectory.label.value, calls))
        return trajectory

    async def __call__(self, batch: pa.Table) -> pa.Table:
        specs = [EpisodeSpec(**row) for row in batch.to_pylist()]
        return trajectories_table(await asyncio.gather(*(self._one(s) for s in specs)))
