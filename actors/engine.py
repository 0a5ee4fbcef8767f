"""Engine actors: the engine ``nat_ray.engines.ENGINES`` names (``HFEngine``, ``VLLMEngine``, ``OVEngine``) as Ray
actors. A crashed engine restarts and its in-flight calls are retried; callers (``EnginePolicy``) see an error only
when that also fails."""

from __future__ import annotations

from typing import Any

import ray

from nat_ray.config import PolicyConfig
from nat_ray.engines import ENGINES


def start_engines(cfg: PolicyConfig, run_id: str) -> list[Any]:
    """``cfg.replicas`` actors of the engine class ``nat_ray.engines.ENGINES[cfg.kind]`` names, each loaded."""
    kind = ENGINES[cfg.kind]
    engine_cls, kwargs = kind.load(), kind.kwargs(cfg)
    remote = ray.remote(
        num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_restarts=-1, max_task_retries=2, max_concurrency=1000
    )(engine_cls)
    handles = [remote.options(name=f"nat-ray-engine-{run_id}-{i}").remote(**kwargs) for i in range(cfg.replicas)]
    # surface load errors (missing folder, not a causal LM) now, before any episode is scheduled
    ray.get([h.__ray_ready__.remote() for h in handles])
    return handles


def engine_precision(handles: list[Any]) -> str | None:
    """What the engines compute in (their ``precision()``: the dtype's name first, then why); None for an engine
    class without one, or no engines."""
    if not handles:
        return None
    try:
        method = handles[0].precision
    except AttributeError:
        return None
    return ray.get(method.remote())
