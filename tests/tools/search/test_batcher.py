from __future__ import annotations

import asyncio

import pytest

from nat_ray.tools.search.batcher import MicroBatcher


def test_concurrent_calls_share_batches_and_keep_their_answers() -> None:
    sizes: list[int] = []

    async def double(xs: list[int]) -> list[int]:
        sizes.append(len(xs))
        await asyncio.sleep(0.02)  # while one batch runs, the next one fills up
        return [2 * x for x in xs]

    async def run() -> list[int]:
        batcher = MicroBatcher(double, max_batch_size=8, wait_s=0.005)
        return await asyncio.gather(*(batcher(i) for i in range(50)))

    assert asyncio.run(run()) == [2 * i for i in range(50)]
    assert sum(sizes) == 50 and max(sizes) == 8 and len(sizes) <= 10


def test_unbatched_runs_one_at_a_time() -> None:
    sizes: list[int] = []

    async def ident(xs: list[int]) -> list[int]:
        sizes.append(len(xs))
        return xs

    async def run() -> list[int]:
        batcher = MicroBatcher(ident, max_batch_size=1, wait_s=0)
        return await asyncio.gather(*(batcher(i) for i in range(5)))

    assert asyncio.run(run()) == list(range(5)) and sizes == [1] * 5


def test_a_failing_batch_answers_its_callers_and_the_next_batch_runs() -> None:
    calls = 0

    async def flaky(xs: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model crashed")
        return [x.upper() for x in xs]

    async def run():
        batcher = MicroBatcher(flaky, max_batch_size=4, on_error=lambda x, e: f"Error: {x} ({e})")
        first = await batcher("a")
        second = await batcher("b")
        return first, second

    assert asyncio.run(run()) == ("Error: a (model crashed)", "B")

    async def no_handler():
        return await MicroBatcher(flaky)("c")

    calls = 0
    with pytest.raises(RuntimeError, match="model crashed"):
        asyncio.run(no_handler())
