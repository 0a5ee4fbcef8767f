"""An elastic pool of tool actors, and the client env workers use to call it.

The pool manager is a small async actor. Every ``check_every_s`` it asks each member for its in-flight calls: when the
average is above ``target_inflight`` and the pool is below ``max`` it adds a member; when the pool has been idle for
``idle_s`` and is above ``min`` it removes one; a member that does not answer (killed, node lost) is replaced. On a
cluster, the members' resource requests are what the autoscaler adds nodes for.

A member added under load is handed calls only once it has started: one that cannot be placed (no CPU left for it on
a full machine, a node the autoscaler never brings) waits aside and holds no call. Before this, calls went to it at
once and waited for ever: on a 2-core machine, a calculator pool that grew under a NAT model's calls froze an eval
with every actor idle (2026-12-06). One member starts at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from nat_ray.tools.base import ToolError


class ElasticPool:
    def __init__(
        self,
        actor_cls: type,
        actor_kwargs: dict,
        min_size: int,
        max_size: int,
        target_inflight: int = 8,
        num_cpus: float = 0.25,
        num_gpus: float = 0.0,
        check_every_s: float = 1.0,
        idle_s: float = 30.0,
    ) -> None:
        # A member whose process or node is lost restarts and its calls are retried (tool calls are idempotent); one
        # killed for good (ray.kill) or failing to restart is replaced by the loop below.
        self._remote = ray.remote(
            num_cpus=num_cpus, num_gpus=num_gpus, max_concurrency=1000, max_restarts=-1, max_task_retries=-1
        )(actor_cls)
        context = ray.get_runtime_context()
        self.name = context.get_actor_name() or "pool"
        # a restarted manager's members are new actors (the old ones died with the old manager, their owner): new
        # names, so a name still held by a dying member cannot collide
        if context.was_current_actor_reconstructed:
            self.name += f"/r{uuid.uuid4().hex[:6]}"
        self._created = 0
        self.actor_kwargs = actor_kwargs
        self.min_size, self.max_size = min_size, max_size
        self.target_inflight = target_inflight
        self.check_every_s, self.idle_s = check_every_s, idle_s
        # the first members fit (the session checks the actors started at once against the cluster): callers wait
        # for them to start; those added under load join once started
        self.members: list[Any] = [self._new() for _ in range(min_size)]
        self.starting: list[Any] = []
        self.version = 0
        self.replaced = 0
        self.peak = min_size
        self._idle_since = time.monotonic()
        self._loop: asyncio.Task | None = None
        self._admitting: set[asyncio.Task] = set()  # references kept: the loop holds tasks weakly

    def _new(self) -> Any:
        # named "<pool>/<n>" so an operator (or a test) can find a member with ray.get_actor
        self._created += 1
        return self._remote.options(name=f"{self.name}/{self._created}").remote(**self.actor_kwargs)

    async def members_list(self) -> tuple[int, list[Any]]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._autoscale())
        return self.version, list(self.members)

    async def report_dead(self, member: Any) -> None:
        ids = [m._actor_id for m in self.members]
        if member._actor_id in ids:
            self._replace(ids.index(member._actor_id))

    def _replace(self, index: int) -> None:
        with contextlib.suppress(Exception):  # it may be half-alive (unreachable node): make sure it is gone
            ray.kill(self.members[index])
        self.members[index] = self._new()
        self.replaced += 1
        self.version += 1

    async def _admit(self, member: Any) -> None:
        try:
            await member.__ray_ready__.remote()
        except RayError:  # died starting: the next check may add another
            self.starting.remove(member)
            with contextlib.suppress(Exception):
                ray.kill(member)
            return
        self.starting.remove(member)
        self.members.append(member)
        self.version += 1
        self.peak = max(self.peak, len(self.members))

    async def stats(self) -> dict:
        return {
            "size": len(self.members),
            "starting": len(self.starting),
            "peak": self.peak,
            "replaced": self.replaced,
            "version": self.version,
        }

    async def member_stats(self, method: str = "stats") -> list[dict]:
        """Each live member's own counters (a member that does not answer is left out)."""

        async def one(m: Any) -> dict | None:
            try:
                return await asyncio.wait_for(getattr(m, method).remote(), timeout=10)
            except (RayError, asyncio.TimeoutError, GetTimeoutError, AttributeError):
                return None

        return [s for s in await asyncio.gather(*(one(m) for m in self.members)) if s is not None]

    async def _loads(self) -> list[int | str]:
        """Each member's in-flight calls, or "dead" (its actor died), or "slow" (no answer in time: still starting,
        e.g. loading models, or too busy to answer — not replaced for that)."""

        async def load(m: Any) -> int | str:
            try:
                return await asyncio.wait_for(m.inflight.remote(), timeout=max(5.0, 5 * self.check_every_s))
            except RayActorError:
                return "dead"
            except (RayError, asyncio.TimeoutError, GetTimeoutError):
                return "slow"

        return list(await asyncio.gather(*(load(m) for m in self.members)))

    async def _autoscale(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            loads = await self._loads()
            for i, load in enumerate(loads):
                if load == "dead":
                    self._replace(i)
            alive = [x for x in loads if isinstance(x, int)]
            busy = sum(alive) + self.target_inflight * loads.count("slow")
            if busy:
                self._idle_since = time.monotonic()
            grow = alive and busy / len(alive) > self.target_inflight and len(self.members) < self.max_size
            if grow and not self.starting:
                member = self._new()
                self.starting.append(member)
                self._admitting.add(asyncio.get_running_loop().create_task(self._admit(member)))
                self._admitting = {t for t in self._admitting if not t.done()}
            elif not busy and len(self.members) > self.min_size and time.monotonic() - self._idle_since > self.idle_s:
                victim = self.members.pop()
                self.version += 1
                with contextlib.suppress(Exception):
                    ray.kill(victim)

    async def shutdown(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        for m in [*self.members, *self.starting]:
            with contextlib.suppress(Exception):
                ray.kill(m)


class PoolClient:
    """Calls a pool member (least recently used first); a dead member is reported, and the call goes to another."""

    def __init__(self, manager: Any, method: str = "run", attempts: int = 3, refresh_s: float = 2.0) -> None:
        self.manager = manager
        self.method = method
        self.attempts = attempts
        self.refresh_s = refresh_s
        self._members: list[Any] = []
        self._next = 0
        self._fetched = 0.0

    async def _refresh(self, force: bool = False) -> None:
        if force or not self._members or time.monotonic() - self._fetched > self.refresh_s:
            _, self._members = await self.manager.members_list.remote()
            self._fetched = time.monotonic()

    async def __call__(self, argument: str) -> str:
        last: Exception | None = None
        for _ in range(self.attempts):
            await self._refresh(force=last is not None)
            member = self._members[self._next % len(self._members)]
            self._next += 1
            try:
                return await getattr(member, self.method).remote(argument)
            except RayActorError as exc:
                last = exc
                await self.manager.report_dead.remote(member)
            except RayError as exc:
                last = exc
        raise ToolError(f"tool pool call failed after {self.attempts} attempts: {type(last).__name__}")
