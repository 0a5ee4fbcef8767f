"""The ReAct protocol, as the paper's ``data/generate.py`` runs it, as a pure state machine (no I/O).

The conversation is the template's task prompt turns plus the question turn. Each policy call stops at
``\\nObservation:``. A reply splits into thought and action at ``\\nAction: `` (a reply that starts with ``Action: ``
has no thought); an action is ``type[argument]``. ``calculate[...]`` / ``search[...]`` call the tool and add a user
turn ``Observation: <result>``; ``finish[answer]`` ends the episode (followed, as in the paper's files, by the user
turn ``Observation: Episode finished``) and is graded. An unparseable reply or an unknown action ends the episode as
a malformed-action failure — the reply is not kept in the turns, as in the paper (training sets are built from
the turns), but on the trajectory's ``malformed_reply`` so what the model said can be read. The turn limit
(default 6) counts assistant turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nat_ray.tasks import Question, TaskSpec
from nat_ray.types import FinishReason, Label, Trajectory, Turn

STOP = ["\nObservation:"]
FINISHED_OBSERVATION = "Episode finished"


@dataclass(frozen=True)
class Action:
    type: str  # lower-cased action name: calculate, search, finish, …
    argument: str


def split_reply(reply: str) -> tuple[str, str] | None:
    """``(thought, action text)``, or None when the reply has no action."""
    text = reply.strip()
    if "\nAction: " in text:
        thought, action = text.split("\nAction: ")[:2]
        return thought, action
    if text.startswith("Action: "):
        return "", text[len("Action: ") :]
    return None


def parse_action(action_text: str) -> Action | None:
    """``type[argument]``: the name before the first ``[``, the text up to the last ``]``; nothing may follow it."""
    text = action_text.strip()
    open_at, close_at = text.find("["), text.rfind("]")
    if open_at <= 0 or close_at < open_at or text[close_at + 1 :].strip():
        return None
    name = text[:open_at].strip()
    if not name.replace("_", "").isalnum():
        return None
    return Action(type=name.lower(), argument=text[open_at + 1 : close_at])


def parse_reply(reply: str) -> Action | None:
    parts = split_reply(reply)
    return None if parts is None else parse_action(parts[1])


@dataclass
class Episode:
    """One episode's state. Drive it with :meth:`step` (policy reply in, tool call or end out) and :meth:`observe`."""

    task: TaskSpec
    question: Question
    prompt: list[Turn]  # instruction turns + question turn
    tools: frozenset[str]  # action names the environment offers besides finish
    max_turns: int = 6
    turns: list[Turn] = field(default_factory=list)
    prediction: str | None = None
    finish_reason: FinishReason | None = None
    action_errors: int = 0
    malformed_reply: str | None = None
    pending: Action | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def messages(self) -> list[dict[str, str]]:
        """The chat messages for the next policy call."""
        return [{"role": t.role, "content": t.content} for t in (*self.prompt, *self.turns)]

    def step(self, reply: str) -> Action | None:
        """Take a policy reply. Returns the tool action to run, or None when the episode ended."""
        if self.done or self.pending is not None:
            raise RuntimeError("step() called on a finished episode or before observe()")
        action = parse_reply(reply)
        if action is None or (action.type not in self.tools and "finish" not in action.type):
            self.action_errors += 1
            self.malformed_reply = reply
            self.finish_reason = FinishReason.MALFORMED_ACTION
            return None
        self.turns.append(Turn(role="assistant", content=reply, loss=True))
        if "finish" in action.type:  # the paper's test: any action whose name contains 'finish'
            self.prediction = action.argument
            self.turns.append(Turn(role="user", content=f"Observation: {FINISHED_OBSERVATION}", loss=False))
            self.finish_reason = FinishReason.FINISH
            return None
        self.pending = action
        return action

    def observe(self, observation: str) -> None:
        if self.pending is None:
            raise RuntimeError("observe() without a pending tool action")
        self.pending = None
        self.turns.append(Turn(role="user", content=f"Observation: {observation}", loss=False))
        if sum(1 for t in self.turns if t.role == "assistant") >= self.max_turns:
            self.finish_reason = FinishReason.MAX_TURNS

    def trajectory(self, *, model: str, temperature: float | None, sample_index: int, source: str) -> Trajectory:
        """The graded, labelled record of a finished episode."""
        if not self.done:
            raise RuntimeError("trajectory() before the episode ended")
        grade = self.task.grade(self.question.ground_truth, self.prediction)
        return Trajectory(
            id=self.question.id,
            task=self.task.name,
            question=self.question.question,
            ground_truth=self.question.ground_truth,
            turns=list(self.turns),
            prediction=self.prediction,
            reward=grade.reward,
            em=grade.em,
            f1=grade.f1,
            label=Label.POSITIVE if grade.reward else Label.NEGATIVE,
            finish_reason=self.finish_reason,
            action_errors=self.action_errors,
            malformed_reply=self.malformed_reply,
            model=model,
            temperature=temperature,
            sample_index=sample_index,
            source=source,
        )


def error_trajectory(
    task: TaskSpec,
    question: Question,
    error: str,
    turns: list[Turn],
    *,
    model: str,
    temperature: float | None,
    sample_index: int,
    source: str,
) -> Trajectory:
    """An episode lost to infrastructure (policy endpoint, tool, timeout): never graded, never a training negative."""
    return Trajectory(
        id=question.id,
        task=task.name,
        question=question.question,
        ground_truth=question.ground_truth,
        turns=turns,
        label=Label.ERROR,
        finish_reason=FinishReason.ERROR,
        error=error[:2000],
        model=model,
        temperature=temperature,
        sample_index=sample_index,
        source=source,
    )
