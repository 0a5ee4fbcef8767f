"""A new engine is one class and one registry entry: it validates as a policy kind, starts as Ray actors and answers
through the same client as the shipped engines."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from nat_ray.config import PolicyConfig
from nat_ray.engines import ENGINES, EngineKind, register_engine, serves_checkpoints
from nat_ray.policy import build_policy
from nat_ray.policy.base import Completion, SamplingParams


class EchoEngine:
    """A toy engine: every reply is the one it was built with, after the last user message."""

    def __init__(self, model: str, reply: str) -> None:
        self.model, self.reply = model, reply

    async def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        return Completion(text=f"{self.reply} ({messages[-1]['content']}, max {params.max_tokens})")

    def precision(self) -> str:
        return "none (a toy)"


@pytest.fixture
def echo_kind():
    register_engine("echo", EngineKind(f"{__name__}:EchoEngine", lambda cfg: {"model": cfg.model,
                                                                               "reply": "Action: finish[4]"},
                                       serves_checkpoints=False))  # fmt: skip
    yield "echo"
    ENGINES.pop("echo")


def test_an_unknown_kind_names_the_registered_ones(echo_kind: str) -> None:
    with pytest.raises(ValidationError, match="unknown policy kind 'echoo'; choose from openai, scripted, transf"):
        PolicyConfig(kind="echoo", model="m")
    with pytest.raises(ValidationError, match="needs model"):
        PolicyConfig(kind=echo_kind)  # an engine kind needs a model, as the shipped ones do
    with pytest.raises(ValueError, match="client policy kind"):
        register_engine("openai", ENGINES["transformers"])
    assert serves_checkpoints("transformers") and not serves_checkpoints(echo_kind)


def test_a_registered_engine_starts_as_actors_and_answers(echo_kind: str, ray_local) -> None:
    import ray

    from actors.engine import start_engines

    cfg = PolicyConfig(kind=echo_kind, model="toy", replicas=2, num_cpus=0.1, max_tokens=32)
    handles = start_engines(cfg, "registry-test")
    try:
        assert len(handles) == 2
        policy = build_policy(cfg, template=None, engines=handles)  # type: ignore[arg-type]
        reply = asyncio.run(policy.complete([{"role": "user", "content": "2 + 2?"}], SamplingParams(0.0, 32)))
        assert reply.text == "Action: finish[4] (2 + 2?, max 32)"
    finally:
        for h in handles:
            ray.kill(h)
