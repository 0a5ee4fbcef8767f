"""Scripted policies, for testing and measuring orchestration — never a stand-in for an LLM capability.

- ``replay``: replays the recorded assistant turns of a trajectories dataset, with a fixed reply latency, so an
  orchestration run has the real shape of agent episodes (turn counts, tool calls) at a known cost per call.
- ``arithmetic``: a deterministic toy agent for math questions: ``calculate[<the question's numbers summed>]``, then
  ``finish[<the observation>]``; exercises the calculator and the grader for real.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.policy.base import Completion, Policy, SamplingParams, trim_at_stop
from nat_ray.prompts import PromptTemplate

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _agent_turns(messages: list[dict[str, str]], prompt_len: int) -> int:
    return sum(1 for m in messages[prompt_len:] if m["role"] == "assistant")


class ReplayPolicy(Policy):
    """Replies with the recorded assistant turns of the trajectory whose question the episode asks."""

    def __init__(self, replay_from: str | Path, template: PromptTemplate, latency_s: float = 0.0) -> None:
        from nat_ray.storage import read_trajectories

        self.model = f"replay:{Path(replay_from).name}"
        self.latency_s = latency_s
        self._prompt_len = len(template.conversations) + 1
        self._replies: dict[str, list[str]] = {}
        for t in read_trajectories(replay_from):
            key = template.inference_messages(t.question)[-1].content
            replies = [x.content for x in t.turns if x.role == "assistant"]
            if replies and key not in self._replies:
                self._replies[key] = replies
        if not self._replies:
            raise InputError(f"{replay_from}: no trajectories with assistant turns to replay")

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        replies = self._replies.get(messages[self._prompt_len - 1]["content"])
        turn = _agent_turns(messages, self._prompt_len)
        if replies is None or turn >= len(replies):
            return Completion(text="Action: finish[]")
        return Completion(text=trim_at_stop(replies[turn], params.stop))


class ArithmeticPolicy(Policy):
    model = "scripted:arithmetic"

    def __init__(self, template: PromptTemplate, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self._prompt_len = len(template.conversations) + 1

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if _agent_turns(messages, self._prompt_len) == 0:
            numbers = _NUMBER.findall(messages[self._prompt_len - 1]["content"]) or ["0"]
            return Completion(text=f"Thought: add the numbers.\nAction: calculate[{' + '.join(numbers)}]")
        observation = messages[-1]["content"].removeprefix("Observation: ")
        return Completion(text=f"Thought: that is the answer.\nAction: finish[{observation}]")
