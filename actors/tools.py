"""Tool actors: each holds one tool instance and counts load (the elastic pool grows on it).

- ``CalculatorActor``: the calculator keeps its isolated worker process.
- ``SearchActor``: the search pipeline — models loaded once, concurrent queries batched, the shared cache.
"""

from __future__ import annotations

import asyncio

from nat_ray.tools.calculator import Calculator


class CalculatorActor:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self.calc = Calculator(timeout_s=timeout_s)
        self._inflight = 0

    async def run(self, expression: str) -> str:
        self._inflight += 1
        try:
            # the calculator blocks (its worker answers one expression at a time); a thread keeps this actor's event
            # loop free to report load and queue more calls
            return await asyncio.to_thread(self.calc, expression)
        finally:
            self._inflight -= 1

    def inflight(self) -> int:
        return self._inflight


class SearchActor:
    def __init__(self, config: dict, cache_path: str | None = None) -> None:
        import torch

        from nat_ray.tools.config import SearchConfig
        from nat_ray.tools.search import build_pipeline
        from nat_ray.tools.search.batcher import MicroBatcher

        cfg = SearchConfig.model_validate(config)
        torch.set_num_threads(max(1, int(cfg.num_cpus)))  # the encoders use the CPUs this actor reserved
        self.pipeline = build_pipeline(cfg, cache_path)
        self.batcher = MicroBatcher(
            self.pipeline.search,
            max_batch_size=cfg.max_batch_size,
            wait_s=cfg.batch_wait_ms / 1000,
            on_error=lambda _query, exc: f"Error: search failed ({type(exc).__name__})",
        )
        self._inflight = 0

    async def run(self, query: str) -> str:
        hit = self.pipeline.cached(query)
        if hit is not None:
            return hit
        self._inflight += 1
        try:
            return await self.batcher(query)
        finally:
            self._inflight -= 1

    def inflight(self) -> int:
        return self._inflight

    def stats(self) -> dict:
        return {**self.pipeline.stats(), "batches": self.batcher.batches, "batched_queries": self.batcher.items}


TOOL_ACTORS = {"calculate": CalculatorActor, "search": SearchActor}
