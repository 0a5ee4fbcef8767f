"""Run one episode: policy and tools in, a labelled :class:`~nat_ray.types.Trajectory` out (plain async Python)."""

from __future__ import annotations

from dataclasses import dataclass

from nat_ray.policy.base import Policy, PolicyError, SamplingParams
from nat_ray.prompts import PromptTemplate
from nat_ray.react import Episode, error_trajectory
from nat_ray.tasks import Question, TaskSpec
from nat_ray.tools.base import Tool, ToolError
from nat_ray.types import Trajectory


@dataclass(frozen=True)
class EpisodeSpec:
    """One row of the rollout plan."""

    task: str
    id: str
    question: str
    ground_truth: str
    temperature: float
    sample_index: int

    @property
    def key(self) -> tuple[str, str, float, int]:
        return (self.task, self.id, self.temperature, self.sample_index)


class EpisodeRunner:
    def __init__(
        self,
        task: TaskSpec,
        template: PromptTemplate,
        policy: Policy,
        tools: dict[str, Tool],
        source: str,
        max_turns: int = 6,
        max_tokens: int = 512,
        max_attempts: int = 2,
    ) -> None:
        self.task = task
        self.template = template
        self.policy = policy
        self.tools = tools
        self.source = source
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.max_attempts = max_attempts

    async def run(self, spec: EpisodeSpec) -> Trajectory:
        question = Question(id=spec.id, question=spec.question, ground_truth=spec.ground_truth)
        params = SamplingParams(temperature=spec.temperature, max_tokens=self.max_tokens)
        last_error, turns = "", []
        for _ in range(self.max_attempts):
            episode = Episode(
                task=self.task,
                question=question,
                prompt=self.template.inference_messages(spec.question),
                tools=frozenset(self.tools),
                max_turns=self.max_turns,
            )
            tokens = {"prompt_tokens": 0, "completion_tokens": 0}
            try:
                while not episode.done:
                    completion = await self.policy.complete(episode.messages(), params)
                    tokens["prompt_tokens"] += completion.prompt_tokens
                    tokens["completion_tokens"] += completion.completion_tokens
                    action = episode.step(completion.text)
                    if action is not None:
                        episode.observe(await self.tools[action.type](action.argument))
                trajectory = episode.trajectory(source=self.source, **self._meta(spec))
                return trajectory.model_copy(update=tokens)
            except (PolicyError, ToolError) as exc:
                last_error, turns = f"{type(exc).__name__}: {exc}", list(episode.turns)
        return error_trajectory(self.task, question, last_error, turns, source=self.source, **self._meta(spec))

    def _meta(self, spec: EpisodeSpec) -> dict:
        # read the model name after the calls: a policy may learn it from its server (model: auto)
        return {"model": self.policy.model, "temperature": spec.temperature, "sample_index": spec.sample_index}
