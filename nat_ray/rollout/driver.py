"""The rollout driver: episodes stream through a pool of env-worker actors into a trajectories dataset.

    nat-ray rollout --config configs/rollout_gsm8k_smollm2.yaml
    ray job submit --working-dir . -- nat-ray rollout --config configs/rollout_gsm8k_openai.yaml

Plan (question x temperature x sample) -> skip what the output folder already holds (resume) -> batches of specs on
an elastic pool of ``EnvWorker`` actors (``rollout.env_workers: {min, max}``, :mod:`actors.env_pool`) -> the driver
writes each result once, atomically, as it arrives. Env-worker actors that die are restarted by Ray and their batches
run again; the writer drops any episode it has already written, so the output holds each episode exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from nat_ray.config import PolicyConfig, RunConfig, dump_config
from nat_ray.engines import serves_checkpoints
from nat_ray.errors import InputError
from nat_ray.hardware import machine
from nat_ray.policy.base import PolicyError
from nat_ray.prompts import PromptTemplate, get_template
from nat_ray.ray_init import init_ray
from nat_ray.rollout.plan import episode_settings, identity, plan_episodes, prompts_path
from nat_ray.rollout.stream import run_episodes, steady_rate
from nat_ray.rollout.writer import TrajectoryWriter
from nat_ray.tasks import get_task
from nat_ray.tools.config import SearchConfig


def validate(cfg: RunConfig) -> None:
    """Everything that can be checked before any work starts."""
    if cfg.rollout is None or cfg.policy is None:
        raise InputError("a rollout needs the 'rollout' and 'policy' sections")
    task = get_task(cfg.rollout.task)
    get_template(prompts_path(cfg), cfg.rollout.template).inference_messages("?")
    if task.tool == "search":
        validate_search(cfg.tools.search, task.name)
    if serves_checkpoints(cfg.policy.kind):
        from nat_ray.models import resolve_model_path

        resolve_model_path(cfg.policy.model)


def validate_search(search: SearchConfig | None, task: str) -> None:
    """The search actors would fail in their constructors; say what is missing before any work starts."""
    from nat_ray.tools.search.local import read_index_manifest
    from nat_ray.tools.search.rank import resolve_search_model
    from nat_ray.tools.search.serper import serper_api_key

    if search is None:
        raise InputError(f"task {task} needs the search tool: configure tools.search")
    if search.kind == "replay":
        return
    if search.kind == "local":
        assert search.index is not None
        read_index_manifest(search.index.path)
    if search.kind == "serper":
        serper_api_key(search.serper.api_key_env)
    for field, model in (("embed_model", search.embed_model), ("rerank_model", search.rerank_model)):
        if model:
            resolve_search_model(model, f"tools.search.{field}")


def check_endpoint(policy_cfg: PolicyConfig, template: PromptTemplate) -> None:
    """An unreachable OpenAI-compatible endpoint is one clear error before any actor starts."""
    from nat_ray.policy import build_policy

    if policy_cfg.kind != "openai":
        return

    async def check() -> None:
        policy = build_policy(policy_cfg, template)
        try:
            await policy.check()
        finally:
            await policy.aclose()

    try:
        asyncio.run(check())
    except PolicyError as exc:
        raise InputError(str(exc)) from None


def start_ray(cfg: RunConfig) -> None:
    init_ray(cfg.ray_address)


def run_rollout(cfg: RunConfig, progress: bool = True) -> dict:
    validate(cfg)
    rc, pc = cfg.rollout_section, cfg.policy_section
    specs = plan_episodes(cfg)
    writer = TrajectoryWriter(cfg.trajectories_dir(), dump_config(cfg), identity(cfg), rc.flush_every)
    todo = [s for s in specs if s.key not in writer.done]
    if not todo:
        return writer.close(complete=True)
    settings = episode_settings(cfg)
    check_endpoint(pc, settings.template)
    start_ray(cfg)

    from tqdm import tqdm

    bar = tqdm(total=len(specs), initial=writer.resumed, unit="ep", disable=not progress, desc="rollout", mininterval=2)
    if progress:
        bar.write(f"rollout: {len(todo)} episodes to run; starting env workers (the first episodes take a while)")
    complete = False
    try:
        stats, pool_stats = run_episodes(cfg, rc, todo, {settings.task.name: settings}, writer.add, bar)
        pool_stats.pop("engines_started")
        precision = pool_stats.pop("precision")
        complete = True
    finally:
        bar.n = len(writer.done)  # what is in the output, whatever the events said
        bar.set_postfix(pos=writer.counts["positive"], neg=writer.counts["negative"], err=writer.counts["error"])
        bar.close()
        meta = writer.close(complete=complete and len(writer.done) >= len(specs))
    run = len(writer.done) - writer.resumed
    meta["run"] = {
        "episodes_run": run,
        "resumed_from": writer.resumed,
        "seconds": round(stats.seconds, 3),
        "episodes_per_s": run / stats.seconds if stats.seconds > 0 else None,  # whole wall time, start-up included
        "steady_episodes_per_s": steady_rate(stats.episodes_at),
        "steady_policy_calls_per_s": steady_rate(stats.calls_at),
        "tool_pools": pool_stats,
        "env_workers": stats.env_workers,
        "precision": precision,  # the engines' (None for an endpoint)
        "machine": machine(),
        "out": str(Path(cfg.trajectories_dir())),
    }
    return meta
