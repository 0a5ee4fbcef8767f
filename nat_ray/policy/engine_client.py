"""Policy client for in-cluster engine actors (``actors.engine``): spreads calls over the engine replicas."""

from __future__ import annotations

import itertools
from typing import Any

from nat_ray.policy.base import Completion, Policy, PolicyError, SamplingParams


class EnginePolicy(Policy):
    def __init__(self, handles: list[Any], model: str) -> None:
        if not handles:
            raise ValueError("EnginePolicy needs at least one engine actor")
        self.model = model
        self._handles = handles
        self._next = itertools.cycle(range(len(handles)))

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        from ray.exceptions import RayError

        handle = self._handles[next(self._next)]
        try:
            return await handle.generate.remote(messages, params)
        except RayError as exc:  # engine died (and its restarts/retries did not save the call)
            raise PolicyError(f"engine actor failed: {type(exc).__name__}: {str(exc)[:300]}") from None


class LocalEnginePolicy(Policy):
    """An engine object in this process (no Ray): benchmarks and ``nat-ray chat``."""

    def __init__(self, engine: Any, model: str) -> None:
        self.engine = engine
        self.model = model

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        return await self.engine.generate(messages, params)
