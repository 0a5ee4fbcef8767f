"""A scripted ``search`` tool: each query answered with the observation recorded after it in a trajectories dataset.

For orchestration tests and benchmarks only (it pairs with the replay policy); it is not a search engine.
"""

from __future__ import annotations

from pathlib import Path

from nat_ray.react import parse_reply
from nat_ray.storage import read_trajectories


class ReplaySearch:
    def __init__(self, replay_from: str | Path) -> None:
        self.observations: dict[str, str] = {}
        for t in read_trajectories(replay_from):
            for turn, nxt in zip(t.turns, t.turns[1:], strict=False):
                action = parse_reply(turn.content) if turn.role == "assistant" else None
                if action is not None and action.type == "search":
                    self.observations.setdefault(action.argument, nxt.content.removeprefix("Observation: "))

    async def __call__(self, query: str) -> str:
        return self.observations.get(query, "No results.")
