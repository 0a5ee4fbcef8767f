"""In-cluster engines by policy kind: the one registry that the config, the engine actors and the drivers read.

An engine is a class with the interface ``nat_ray.policy.engine_client.EnginePolicy`` calls (``async
generate(messages, params) -> Completion``; ``precision()`` where it chooses one: the dtype's name first, then
why), started as Ray actors by ``actors.engine``. Adding one is one class and one entry::

    from nat_ray.engines import EngineKind, register_engine

    register_engine("myengine", EngineKind("mypkg.engine:MyEngine", lambda cfg: {"model": cfg.model}))

after which ``policy.kind: myengine`` validates, starts its actors and serves rollouts and evals (the registering
module must be imported in the process that loads the config and starts the engines: the driver).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nat_ray.config import PolicyConfig


@dataclass(frozen=True)
class EngineKind:
    """``target``: ``"module:Class"``, imported only when an engine starts (vLLM is an optional install);
    ``kwargs``: the class's constructor arguments from the policy section; ``serves_checkpoints``: its ``model`` is a
    model folder or prepared name (so a run's fine-tuned checkpoints can be served, and the folder is checked before
    anything starts) rather than a format of its own; ``reads_dtype``: it decodes in
    ``policy.dtype`` (so an eval can ask it for float32, ``eval.repeatable``, and records the dtype)."""

    target: str
    kwargs: Callable[[PolicyConfig], dict[str, Any]]
    serves_checkpoints: bool = True
    reads_dtype: bool = False

    def load(self) -> type:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


def _threads(cfg: PolicyConfig) -> int:
    return math.ceil(cfg.num_cpus)


ENGINES: dict[str, EngineKind] = {
    "transformers": EngineKind(
        "nat_ray.policy.hf_engine:HFEngine",
        lambda cfg: {
            "model": cfg.model,
            "max_batch_size": cfg.max_batch_size,
            "num_threads": _threads(cfg),
            "batching": cfg.batching,
            "dtype": cfg.dtype,
        },
        reads_dtype=True,
    ),
    "vllm": EngineKind("nat_ray.policy.vllm_engine:VLLMEngine", lambda cfg: {"model": cfg.model}),
    "openvino": EngineKind(
        "nat_ray.policy.openvino_engine:OVEngine",
        lambda cfg: {
            "model": cfg.model,
            "max_batch_size": cfg.max_batch_size,
            "num_threads": _threads(cfg),
            "dtype": cfg.dtype,
        },
        # policy.dtype auto: the IR's and OpenVINO's CPU defaults (bf16 where the CPU has it; the project's exports
        # keep the KV cache in f16); float32: f32 arithmetic and KV cache, what eval.repeatable asks for
        # (docs/benchmarks.md: reruns with other batch company).
        # Its model is a model folder or prepared name (exported to OpenVINO IR once, nat_ray.policy.openvino_export)
        # or an IR folder.
        reads_dtype=True,
    ),
}
CLIENT_KINDS = ("openai", "scripted")  # policies that are not engine actors (nat_ray.policy.POLICIES)


def register_engine(kind: str, engine: EngineKind) -> None:
    if kind in CLIENT_KINDS:
        raise ValueError(f"{kind!r} is a client policy kind, not an engine")
    ENGINES[kind] = engine


def serves_checkpoints(kind: str) -> bool:
    """An engine whose ``model`` is a model folder or prepared name: it can serve a run's fine-tuned models."""
    engine = ENGINES.get(kind)
    return engine is not None and engine.serves_checkpoints


def reads_dtype(kind: str) -> bool:
    """An engine that decodes in ``policy.dtype``."""
    engine = ENGINES.get(kind)
    return engine is not None and engine.reads_dtype
