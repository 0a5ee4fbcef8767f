from __future__ import annotations

import pytest

from nat_ray.prompts import PromptTemplate
from nat_ray.react import Action, Episode, parse_action, parse_reply, split_reply
from nat_ray.tasks import Question, get_task
from nat_ray.types import FinishReason, Label, Turn


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Thought: add.\nAction: calculate[2 + 3]", Action("calculate", "2 + 3")),
        ("Action: finish[5]", Action("finish", "5")),  # no thought
        ("  Thought: x\nAction: search[Who is [X]?]  ", Action("search", "Who is [X]?")),  # up to the last ]
        ("Thought: a\nAction: Finish[Yes]", Action("finish", "Yes")),
        ("Thought: a\nAction: calculate[1]\nAction: finish[2]", Action("calculate", "1")),  # first action only
        ("Thought: I think 5.", None),  # no action
        ("Thought: a Action: finish[5]", None),  # the action must start a line
        ("Thought: a\nAction: finish 5", None),  # no brackets
        ("Thought: a\nAction: finish[5] and more", None),  # text after the action
        ("Thought: a\nAction: [5]", None),  # no action name
        ("Thought: a\nAction: do it[5]", None),
    ],
)
def test_parse_reply(reply: str, expected: Action | None) -> None:
    assert parse_reply(reply) == expected


def test_split_reply_and_parse_action() -> None:
    assert split_reply("Thought: t\nAction: finish[1]") == ("Thought: t", "finish[1]")
    assert split_reply("Action: finish[1]") == ("", "finish[1]")
    assert split_reply("nothing") is None
    assert parse_action("calculate[]") == Action("calculate", "")


def _episode(max_turns: int = 6) -> Episode:
    template = PromptTemplate("t", "x", (Turn(role="user", content="Solve."),), question_prompt="Question: {question}")
    return Episode(
        task=get_task("gsm8k"),
        question=Question(id="7", question="2+3?", ground_truth="5"),
        prompt=template.inference_messages("2+3?"),
        tools=frozenset({"calculate"}),
        max_turns=max_turns,
    )


def _traj(ep: Episode):
    return ep.trajectory(model="m", temperature=0.5, sample_index=0, source="s")


def test_finish_is_graded_and_followed_by_the_papers_observation() -> None:
    ep = _episode()
    assert ep.messages()[-1] == {"role": "user", "content": "Question: 2+3?"}
    act = ep.step("Thought: add.\nAction: calculate[2+3]")
    assert act == Action("calculate", "2+3")
    ep.observe("5")
    assert ep.step("Action: finish[5]") is None and ep.done
    t = _traj(ep)
    assert (t.label, t.reward, t.prediction, t.finish_reason) == (Label.POSITIVE, True, "5", FinishReason.FINISH)
    assert [(x.role, x.content, x.loss) for x in t.turns] == [
        ("assistant", "Thought: add.\nAction: calculate[2+3]", True),
        ("user", "Observation: 5", False),
        ("assistant", "Action: finish[5]", True),
        ("user", "Observation: Episode finished", False),
    ]
    assert t.num_turns == 2 and t.action_errors == 0


def test_wrong_answer_is_a_negative() -> None:
    ep = _episode()
    ep.step("Action: finish[6]")
    t = _traj(ep)
    assert (t.label, t.reward, t.prediction) == (Label.NEGATIVE, False, "6")


@pytest.mark.parametrize("reply", ["I don't know", "Thought: t\nAction: search[x]", "Thought: t\nAction: calculate 1"])
def test_malformed_or_unknown_action_ends_the_episode(reply: str) -> None:
    ep = _episode()
    ep.step("Thought: a\nAction: calculate[1]")
    ep.observe("1")
    assert ep.step(reply) is None and ep.done
    t = _traj(ep)
    assert t.finish_reason == FinishReason.MALFORMED_ACTION and t.label == Label.NEGATIVE
    assert t.action_errors == 1 and t.prediction is None
    assert len(t.turns) == 2  # the malformed reply is not kept, as in the paper


def test_turn_limit() -> None:
    ep = _episode(max_turns=2)
    for _ in range(2):
        ep.step("Thought: a\nAction: calculate[1]")
        ep.observe("1")
    assert ep.done and ep.finish_reason == FinishReason.MAX_TURNS
    t = _traj(ep)
    assert t.label == Label.NEGATIVE and t.num_turns == 2


def test_misuse_raises() -> None:
    ep = _episode()
    with pytest.raises(RuntimeError):
        ep.observe("x")
    with pytest.raises(RuntimeError):
        _traj(ep)
    ep.step("Action: calculate[1]")
    with pytest.raises(RuntimeError):
        ep.step("Action: finish[1]")
