"""Continuous batching of concurrent calls: callers await their own answer; one consumer runs whatever has queued
up (at most ``max_batch_size``) as one batch, so the batch grows with load, and a lone query waits ``wait_s`` at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        fn: Callable[[list[In]], Awaitable[list[Out]]],
        max_batch_size: int = 32,
        wait_s: float = 0.005,
        on_error: Callable[[In, BaseException], Out] | None = None,
    ) -> None:
        self.fn, self.max_batch_size, self.wait_s, self.on_error = fn, max_batch_size, wait_s, on_error
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._wake: asyncio.Event | None = None
        self._consumer: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def __call__(self, item: In) -> Out:
        if self._consumer is None or self._consumer.done():
            self._wake = asyncio.Event()
            self._consumer = asyncio.get_running_loop().create_task(self._consume())
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _consume(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.wait_s and len(self._pending) < self.max_batch_size:
                await asyncio.sleep(self.wait_s)  # let calls that arrive together share the batch
            while self._pending:
                batch = self._pending[: self.max_batch_size]
                del self._pending[: len(batch)]
                await self._run(batch)

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self.fn([item for item, _ in batch])
        except Exception as exc:  # one bad batch must not stop the consumer, nor leave callers waiting
            for item, future in batch:
                if not future.done():
                    if self.on_error is None:
                        future.set_exception(exc)
                    else:
                        future.set_result(self.on_error(item, exc))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    @property
    def queued(self) -> int:
        return len(self._pending)
