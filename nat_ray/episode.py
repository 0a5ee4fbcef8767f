"""Run one episode: policy and tools in, a labelled :class:`~nat_ray.types.Trajectory` out (plain async Python).

Drivers resolve the task and the template once and hand workers an :class:`EpisodeSettings` per task; a worker
builds one :class:`EpisodeRunner` per task from it and runs :class:`EpisodeSpec` rows through it. With a seed in the
settings, every sampled reply carries its own seed (:func:`episode_seed`): engines that sample per request (the
cached engine's per-row generator, vLLM, OpenAI-compatible servers that take ``seed``) then draw the same tokens for
an episode in every run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, replace

from nat_ray.policy.base import Policy, PolicyError, SamplingParams
from nat_ray.prompts import PromptTemplate
from nat_ray.react import Episode, error_trajectory
from nat_ray.tasks import Question, TaskSpec
from nat_ray.tools.base import Tool, ToolError
from nat_ray.types import Trajectory


@dataclass(frozen=True)
class EpisodeSpec:
    """One row of a rollout or eval plan."""

    task: str
    id: str
    question: str
    ground_truth: str
    temperature: float
    sample_index: int

    @property
    def key(self) -> tuple[str, str, float, int]:
        return (self.task, self.id, self.temperature, self.sample_index)


@dataclass(frozen=True)
class EpisodeSettings:
    """What every episode of one task shares, resolved once by the driver (workers do not re-read the config)."""

    task: TaskSpec
    template: PromptTemplate
    source: str
    max_turns: int = 6
    max_tokens: int = 512
    max_attempts: int = 2
    seed: int | None = None  # the run's seed: each reply's draws are seeded from it and the episode (episode_seed)


def seed_identity(seed: int, temperatures: list[float]) -> dict[str, int]:
    """The seed as part of what defines a set of episodes (resume checks, stage hashes): only where something is
    sampled, and not the default 0, so outputs made before seeding keep their identity (their draws were random)."""
    return {"seed": seed} if seed != 0 and any(t > 0 for t in temperatures) else {}


def episode_seed(seed: int, key: tuple, attempt: int, turn: int) -> int:
    """The sampling seed of one reply: a hash of the run's seed, the episode's key, the attempt and the turn, so an
    episode draws the same tokens whatever else shares its batch, and in whatever order the episodes run."""
    blob = json.dumps([seed, list(key), attempt, turn]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1  # a non-negative int64


class EpisodeRunner:
    def __init__(self, settings: EpisodeSettings, policy: Policy, tools: dict[str, Tool]) -> None:
        self.settings = settings
        self.policy = policy
        self.tools = tools

    async def run(self, spec: EpisodeSpec) -> Trajectory:
        s = self.settings
        question = Question(id=spec.id, question=spec.question, ground_truth=spec.ground_truth)
        params = SamplingParams(temperature=spec.temperature, max_tokens=s.max_tokens)
        last_error, turns = "", []
        for attempt in range(s.max_attempts):
            episode = Episode(
                task=s.task,
                question=question,
                prompt=s.template.inference_messages(spec.question),
                tools=frozenset(self.tools),
                max_turns=s.max_turns,
            )
            tokens = {"prompt_tokens": 0, "completion_tokens": 0}
            try:
                for turn in itertools.count():
                    if episode.done:
                        break
                    if s.seed is not None and spec.temperature > 0:
                        params = replace(params, seed=episode_seed(s.seed, spec.key, attempt, turn))
                    completion = await self.policy.complete(episode.messages(), params)
                    tokens["prompt_tokens"] += completion.prompt_tokens
                    tokens["completion_tokens"] += completion.completion_tokens
                    action = episode.step(completion.text)
                    if action is not None:
                        episode.observe(await self.tools[action.type](action.argument))
                trajectory = episode.trajectory(source=s.source, **self._meta(spec))
                return trajectory.model_copy(update=tokens)
            except (PolicyError, ToolError) as exc:
                last_error, turns = f"{type(exc).__name__}: {exc}", list(episode.turns)
        return error_trajectory(s.task, question, last_error, turns, source=s.source, **self._meta(spec))

    def _meta(self, spec: EpisodeSpec) -> dict:
        # read the model name after the calls: a policy may learn it from its server (model: auto)
        return {"model": self.policy.model, "temperature": spec.temperature, "sample_index": spec.sample_index}
