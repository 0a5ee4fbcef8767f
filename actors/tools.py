"""Tool actors: each holds one tool instance (the calculator keeps its isolated worker process) and counts load."""

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


TOOL_ACTORS = {"calculate": CalculatorActor}
