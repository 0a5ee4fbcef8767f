"""Policy clients behind one interface (:class:`~nat_ray.policy.base.Policy`), built from config by kind.

- ``openai``: any OpenAI-compatible endpoint (OpenAI, ``vllm serve``, Ray Serve LLM, ``transformers serve``);
- an engine kind of ``nat_ray.engines.ENGINES`` (``transformers`` / ``vllm`` / ``openvino``, or one registered
  there): in-cluster engine actors (``actors.engine``) reached through ``EnginePolicy``;
- ``scripted``: ``replay`` / ``arithmetic`` policies for orchestration tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nat_ray.config import PolicyConfig
from nat_ray.engines import ENGINES
from nat_ray.policy.base import Completion, Policy, PolicyError, SamplingParams
from nat_ray.prompts import PromptTemplate


def _openai(cfg: PolicyConfig, template: PromptTemplate, engines: list[Any]) -> Policy:
    from nat_ray.policy.openai_client import OpenAIPolicy

    assert cfg.base_url is not None
    return OpenAIPolicy(
        base_url=cfg.base_url,
        model=cfg.model,
        api_key_env=cfg.api_key_env,
        max_concurrency=cfg.max_concurrency,
        max_retries=cfg.max_retries,
        timeout_s=cfg.timeout_s,
    )


def _engine(cfg: PolicyConfig, template: PromptTemplate, engines: list[Any]) -> Policy:
    from nat_ray.policy.engine_client import EnginePolicy

    return EnginePolicy(engines, model=cfg.model)


def _scripted(cfg: PolicyConfig, template: PromptTemplate, engines: list[Any]) -> Policy:
    from nat_ray.policy.scripted import ArithmeticPolicy, ReplayPolicy

    if cfg.script == "replay":
        assert cfg.replay_from is not None
        return ReplayPolicy(cfg.replay_from, template, latency_s=cfg.latency_s)
    return ArithmeticPolicy(template, latency_s=cfg.latency_s)


# client policies by kind; every engine kind of nat_ray.engines.ENGINES is reached through EnginePolicy
POLICIES: dict[str, Callable[[PolicyConfig, PromptTemplate, list[Any]], Policy]] = {
    "openai": _openai,
    "scripted": _scripted,
}


def build_policy(cfg: PolicyConfig, template: PromptTemplate, engines: list[Any] | None = None) -> Policy:
    if cfg.kind in ENGINES:
        return _engine(cfg, template, engines or [])
    return POLICIES[cfg.kind](cfg, template, engines or [])


__all__ = ["POLICIES", "Completion", "Policy", "PolicyError", "SamplingParams", "build_policy"]
