"""Engine actors: ``HFEngine`` (transformers), ``VLLMEngine`` or ``OVEngine`` (OpenVINO GenAI) as Ray actors. A
crashed engine restarts and its in-flight calls are retried; callers (``EnginePolicy``) see an error only when that
also fails."""

from __future__ import annotations

import math
import sys
from typing import Any

import ray

from nat_ray.config import PolicyConfig


def start_engines(cfg: PolicyConfig, run_id: str) -> list[Any]:
    if cfg.kind == "vllm":
        from nat_ray.policy.vllm_engine import VLLMEngine as engine_cls

        kwargs: dict = {"model": cfg.model}
    elif cfg.kind == "openvino":
        from nat_ray.policy.openvino_engine import OVEngine as engine_cls

        kwargs = {"model": cfg.model, "max_batch_size": cfg.max_batch_size, "num_threads": math.ceil(cfg.num_cpus)}
    else:
        from nat_ray.policy.hf_engine import HFEngine as engine_cls

        kwargs = {
            "model": cfg.model,
            "max_batch_size": cfg.max_batch_size,
            "num_threads": math.ceil(cfg.num_cpus),
            "batching": cfg.batching,
            "dtype": cfg.dtype,
        }
    remote = ray.remote(
        num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_restarts=-1, max_task_retries=2, max_concurrency=1000
    )(engine_cls)
    handles = [remote.options(name=f"nat-ray-engine-{run_id}-{i}").remote(**kwargs) for i in range(cfg.replicas)]
    # surface load errors (missing folder, not a causal LM) now, before any episode is scheduled
    ray.get([h.__ray_ready__.remote() for h in handles])
    if cfg.kind == "transformers":  # which precision the engines chose, and why (the log is the user's only view)
        print(f"engine: {ray.get(handles[0].precision.remote())}", file=sys.stderr)
    return handles
