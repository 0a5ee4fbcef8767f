"""The policy interface: chat messages in, one completion out (async), cut at the ReAct stop string."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from nat_ray.react import STOP


class PolicyError(Exception):
    """The policy could not answer (endpoint down, engine crashed) after retries: an infrastructure failure."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float
    max_tokens: int = 512
    stop: tuple[str, ...] = field(default_factory=lambda: tuple(STOP))
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def trim_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Cut at the first stop string (servers do; this makes every engine agree)."""
    for s in stop:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text


STOP_WINDOW = 16  # a reply's last tokens decoded to look for a stop string (stop strings are a few tokens long)


def hits_stop(tail: str, tokens: int, stop: tuple[str, ...]) -> bool:
    """Whether a reply whose decoded last tokens are ``tail`` (``tokens`` generated so far) has reached a stop string,
    as ``generate`` decides it: its stop strings may begin in the prompt, which ends in a newline, so a reply that
    opens with ``Observation:`` stops at once under the ReAct stop ``\\nObservation:``. Every engine asks this one
    function (OpenVINO GenAI, matching in the reply alone, ran such replies on to ``max_tokens``)."""
    if tokens <= STOP_WINDOW:  # the tail is the whole reply: it follows the prompt's newline
        tail = "\n" + tail
    return any(s in tail for s in stop)


def chat_token_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt's token ids under the model's own chat template, ready for the assistant's reply."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def settle_threadsafe(loop: asyncio.AbstractEventLoop, done: asyncio.Future, result: Any) -> None:
    """Resolve ``done`` on its event loop from an engine's own thread: an exception fails it, anything else is its
    result; a future already resolved (its caller gave up) is left alone."""

    def settle() -> None:
        if done.done():
            return
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)

    loop.call_soon_threadsafe(settle)


class Policy(ABC):
    model: str  # what produced the replies: recorded in every trajectory

    @abstractmethod
    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion: ...

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Fail fast (PolicyError) when the policy cannot work at all, before any episode starts."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
