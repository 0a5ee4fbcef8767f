"""The paper's prompt templates (``nat/prompts/<task>/<task>_conversation.json``).

A template is the task-instruction turns plus one or more question prompts with a ``{question}`` slot:
``question_prompt`` (plain), ``correct_question_prompt`` / ``incorrect_question_prompt`` (NAT hints), or
``class_1_question_prompt`` … ``class_k_question_prompt`` (graded NAT, worst to best).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.storage import read_json_file
from nat_ray.types import Turn

INCORRECT_HINT = ":incorrect-hint"  # the suffix of a template asked under its incorrect hint


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    source: str  # file it came from, for error messages
    conversations: tuple[Turn, ...]
    question_prompt: str | None = None
    correct_question_prompt: str | None = None
    incorrect_question_prompt: str | None = None
    class_prompts: tuple[str, ...] = field(default_factory=tuple)

    def require(self, key: str) -> str:
        value = getattr(self, key)
        if value is None:
            raise InputError(f"{self.source}: template {self.name!r} has no {key!r}")
        return value

    def messages(self, question_prompt: str, question: str) -> list[Turn]:
        """Instruction turns (never trained on) plus the question turn."""
        try:
            content = question_prompt.format(question=question)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(f"{self.source}: template {self.name!r}: bad question prompt: {exc!r}") from None
        return [*self.conversations, Turn(role="user", content=content, loss=False)]

    def inference_prompt(self) -> str:
        """The question prompt a policy answers at inference: the plain one, or always the 'correct' hint."""
        if self.question_prompt is not None:
            return self.question_prompt
        if self.correct_question_prompt is not None:
            return self.correct_question_prompt
        if self.class_prompts:
            return self.class_prompts[-1]
        raise InputError(f"{self.source}: template {self.name!r} has no question prompt")

    def with_incorrect_hint(self) -> PromptTemplate:
        """This template answering under NAT's incorrect hint where inference uses the correct one (``eval.hint:
        incorrect``): whether a model trained with the hint conditions on it. Named apart, so an eval resumed into a
        folder made under the other hint is refused."""
        return replace(
            self, name=f"{self.name}{INCORRECT_HINT}", question_prompt=self.require("incorrect_question_prompt")
        )

    def inference_messages(self, question: str) -> list[Turn]:
        return self.messages(self.inference_prompt(), question)


def _turns(raw: object, where: str) -> tuple[Turn, ...]:
    if not isinstance(raw, list):
        raise InputError(f"{where}: 'conversations' must be a list of messages")
    turns = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"{where}: message {i} needs string 'role' and 'content'")
        if m["role"] not in ("system", "user", "assistant"):
            raise InputError(f"{where}: message {i} has unknown role {m['role']!r}")
        turns.append(Turn(role=m["role"], content=m["content"], loss=False))
    return tuple(turns)


def load_templates(path: str | Path) -> dict[str, PromptTemplate]:
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of templates")
    out: dict[str, PromptTemplate] = {}
    for name, raw in data.items():
        where = f"{path}: template {name!r}"
        if isinstance(raw, list):
            # A bare conversation (e.g. GSM8K 'one-shot'): a worked example whose questions read 'Question: …'.
            out[name] = PromptTemplate(name, str(path), _turns(raw, where), question_prompt="Question: {question}")
            continue
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected an object or a list")
        classes = []
        k = 1
        while f"class_{k}_question_prompt" in raw:
            classes.append(raw[f"class_{k}_question_prompt"])
            k += 1
        out[name] = PromptTemplate(
            name=name,
            source=str(path),
            conversations=_turns(raw.get("conversations", []), where),
            question_prompt=raw.get("question_prompt"),
            correct_question_prompt=raw.get("correct_question_prompt"),
            incorrect_question_prompt=raw.get("incorrect_question_prompt"),
            class_prompts=tuple(classes),
        )
    return out


def get_template(path: str | Path, name: str) -> PromptTemplate:
    templates = load_templates(path)
    if name not in templates:
        raise InputError(f"{path}: unknown template {name!r}; it has: {', '.join(templates)}")
    return templates[name]
