from __future__ import annotations

import pytest
from pydantic import ValidationError

from nat_ray.types import (
    EXAMPLE_ARROW_SCHEMA,
    SCHEMA_VERSION,
    TRAJECTORY_ARROW_SCHEMA,
    Example,
    FinishReason,
    Label,
    Trajectory,
    Turn,
)


def make_trajectory(**kw) -> Trajectory:
    base = dict(
        id="q1",
        task="gsm8k",
        question="What is 2+2?",
        ground_truth="4",
        turns=[
            Turn(role="assistant", content="Thought: add.\nAction: calculate[2+2]", loss=True),
            Turn(role="user", content="Observation: 4"),
            Turn(role="assistant", content="Action: finish[4]", loss=True),
        ],
        prediction="4",
        reward=True,
        label=Label.POSITIVE,
        finish_reason=FinishReason.FINISH,
        model="gpt-3.5",
        temperature=0.7,
        sample_index=1,
        source="test",
    )
    base.update(kw)
    return Trajectory(**base)


def test_arrow_schemas_match_the_models() -> None:
    assert TRAJECTORY_ARROW_SCHEMA.names == list(Trajectory.model_fields)
    assert EXAMPLE_ARROW_SCHEMA.names == list(Example.model_fields)


def test_row_round_trip_and_derived_fields() -> None:
    t = make_trajectory()
    row = t.to_row()
    assert row["label"] == "positive" and row["finish_reason"] == "finish"
    assert row["schema_version"] == SCHEMA_VERSION
    assert Trajectory.from_row(row) == t
    assert t.num_turns == 2
    assert t.episode_key == ("gsm8k", "q1", 0.7, 1)
    assert t.grade is not None and t.grade.reward
    assert make_trajectory(reward=None, label=Label.ERROR).grade is None


def test_unknown_keys_and_bad_values_are_errors() -> None:
    row = make_trajectory().to_row()
    with pytest.raises(ValidationError, match="extra"):
        Trajectory.from_row(row | {"bogus": 1})
    with pytest.raises(ValidationError, match="label"):
        Trajectory.from_row(row | {"label": "great"})
    with pytest.raises(ValidationError, match="role"):
        Trajectory.from_row(row | {"turns": [{"role": "robot", "content": "x", "loss": False}]})
    with pytest.raises(ValueError, match="schema_version 99"):
        Trajectory.from_row(row | {"schema_version": 99})


def test_records_are_immutable() -> None:
    t = make_trajectory()
    with pytest.raises(ValidationError):
        t.label = Label.NEGATIVE  # type: ignore[misc]
