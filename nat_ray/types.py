"""The one trajectory schema every stage reads and writes (rollout, import, build, train, eval).

A :class:`Trajectory` is one agent episode: the question, the turns the agent and the environment exchanged, the
grade against the ground truth and the label derived from it, and how it was produced (policy, temperature,
sample index, source). Stages exchange these records, never ad-hoc dicts; on disk they are Parquet rows (see
:mod:`nat_ray.io`) with the flat column layout of :data:`TRAJECTORY_ARROW_SCHEMA`.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2
# Version 2 added ``malformed_reply``; version-1 rows (without it) are read as having none.
READABLE_SCHEMA_VERSIONS = (1, 2)

Role = Literal["system", "user", "assistant"]


class Label(str, Enum):
    """``positive``/``negative`` are the policy's own successes and failures; ``error`` is infrastructure failure.

    Error episodes (endpoint down, tool crashed, timeout) are never training negatives.
    """

    POSITIVE = "positive"
    NEGATIVE = "negative"
    ERROR = "error"


class FinishReason(str, Enum):
    FINISH = "finish"  # the agent called finish[answer]
    MAX_TURNS = "max_turns"  # ran out of turns
    MALFORMED_ACTION = "malformed_action"  # unparseable reply or unknown action: a failure of the policy
    ERROR = "error"  # infrastructure failure


class StrictModel(BaseModel):
    """Base of every record and config: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Turn(StrictModel):
    role: Role
    content: str
    loss: bool = False


class Grade(StrictModel):
    reward: bool
    em: bool | None = None
    f1: float | None = None


class Trajectory(StrictModel):
    """One episode. ``id`` is the question id of the task file (shared by all samples of a question)."""

    schema_version: int = SCHEMA_VERSION
    id: str
    task: str
    question: str
    ground_truth: str
    turns: list[Turn] = Field(default_factory=list)
    prediction: str | None = None
    reward: bool | None = None  # None: not graded (error episodes)
    em: bool | None = None
    f1: float | None = None
    label: Label
    finish_reason: FinishReason | None = None
    action_errors: int = 0
    malformed_reply: str | None = None  # the reply that ended the episode as malformed_action (not in the turns)
    error: str | None = None  # what went wrong, for error episodes
    prompt_tokens: int = 0  # summed over the episode's policy calls, as the policy reported them
    completion_tokens: int = 0
    model: str = "unknown"
    temperature: float | None = None
    sample_index: int = 0
    source: str = ""

    @property
    def episode_key(self) -> tuple[str, str, float | None, int]:
        """Identity of an episode: a rollout holds each (task, question, temperature, sample) exactly once."""
        return (self.task, self.id, self.temperature, self.sample_index)

    @property
    def num_turns(self) -> int:
        """Number of agent turns (assistant messages)."""
        return sum(1 for t in self.turns if t.role == "assistant")

    @property
    def grade(self) -> Grade | None:
        return None if self.reward is None else Grade(reward=self.reward, em=self.em, f1=self.f1)

    def to_row(self) -> dict:
        """The flat Parquet/JSONL row (enums as their string values)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_row(cls, row: dict) -> Trajectory:
        version = row.get("schema_version", SCHEMA_VERSION)
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ValueError(f"trajectory schema_version {version} is not supported (this is {SCHEMA_VERSION})")
        return cls.model_validate({**row, "schema_version": SCHEMA_VERSION})


_TURN = pa.struct([("role", pa.string()), ("content", pa.string()), ("loss", pa.bool_())])

TRAJECTORY_ARROW_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("id", pa.string()),
        ("task", pa.string()),
        ("question", pa.string()),
        ("ground_truth", pa.string()),
        ("turns", pa.list_(_TURN)),
        ("prediction", pa.string()),
        ("reward", pa.bool_()),
        ("em", pa.bool_()),
        ("f1", pa.float64()),
        ("label", pa.string()),
        ("finish_reason", pa.string()),
        ("action_errors", pa.int32()),
        ("malformed_reply", pa.string()),
        ("error", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("model", pa.string()),
        ("temperature", pa.float64()),
        ("sample_index", pa.int32()),
        ("source", pa.string()),
    ]
)

# A training example: `{"id", "label", "messages": [{"role", "content", "loss"}]}` (see nat_ray.reformat).
EXAMPLE_ARROW_SCHEMA = pa.schema(
    [("id", pa.string()), ("label", pa.string()), ("messages", pa.list_(_TURN))],
)


class Message(StrictModel):
    """A chat message as TRL's conversational datasets hold them (``{"role", "content"}``)."""

    role: Role
    content: str


class PreferencePair(StrictModel):
    """A DPO record in TRL's conversational preference format: a success (``chosen``) and a failure (``rejected``) on
    the same question, each the conversation after ``prompt`` (the messages before the first assistant turn). Loss
    falls on the assistant messages of ``chosen`` / ``rejected``; tool observations are user messages."""

    id: str
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]


class LabelledCompletion(StrictModel):
    """A KTO record in TRL's unpaired preference format: ``label`` true for a positive trajectory."""

    id: str
    prompt: list[Message]
    completion: list[Message]
    label: bool


class Example(StrictModel):
    """One training example built from a trajectory; ``loss`` is true exactly on the trajectory's assistant turns."""

    id: str
    label: str
    messages: list[Turn]

    def to_row(self) -> dict:
        return self.model_dump(mode="json")
