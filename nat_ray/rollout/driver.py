"""The rollout driver: episodes stream through a Ray Data pipeline of env-worker actors into a trajectories dataset.

    nat-ray rollout --config configs/rollout_gsm8k_smollm2.yaml
    ray job submit --working-dir . -- nat-ray rollout --config configs/rollout_gsm8k_openai.yaml

Plan (question x temperature x sample) -> skip what the output folder already holds (resume) -> Ray Data
``map_batches(EnvWorker)`` on an autoscaling actor pool (``rollout.env_workers: {min, max}``) -> the driver writes
each result once, atomically, as it arrives. Env-worker actors that die are restarted by Ray Data and their batches
run again; the writer drops any episode it has already written, so the output holds each episode exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

from nat_ray.config import RunConfig, dump_config
from nat_ray.errors import InputError
from nat_ray.policy.base import PolicyError
from nat_ray.prompts import get_template
from nat_ray.ray_init import init_ray, quiet_ray_data
from nat_ray.rollout.plan import identity, plan_episodes, prompts_path
from nat_ray.rollout.writer import TrajectoryWriter
from nat_ray.tasks import get_task

# Env workers mostly wait on the policy; a quarter CPU each lets many share a node with the engines and tools.
ENV_WORKER_CPUS = 0.25
TOOL_ACTOR_CPUS = 0.25


def validate(cfg: RunConfig) -> None:
    """Everything that can be checked before any work starts."""
    if cfg.rollout is None or cfg.policy is None:
        raise InputError("a rollout needs the 'rollout' and 'policy' sections")
    task = get_task(cfg.rollout.task)
    get_template(prompts_path(cfg), cfg.rollout.template).inference_messages("?")
    if task.tool == "search" and cfg.tools.search is None:
        raise InputError(f"task {task.name} needs the search tool: configure tools.search")
    if task.tool == "search":
        _validate_search(cfg)
    if cfg.policy.kind in ("transformers", "vllm"):
        from nat_ray.models import resolve_model_path

        resolve_model_path(cfg.policy.model)


def _validate_search(cfg: RunConfig) -> None:
    """The search actors would fail in their constructors; say what is missing before any work starts."""
    from nat_ray.tools.search.local import read_index_manifest
    from nat_ray.tools.search.rank import resolve_search_model
    from nat_ray.tools.search.serper import serper_api_key

    search = cfg.tools.search
    assert search is not None
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


def _check_resources(cfg: RunConfig, tool: str) -> None:
    """The actors a rollout starts at once must fit the cluster, or Ray Data waits for env workers forever."""
    import os

    import ray

    rc, pc = cfg.rollout, cfg.policy
    assert rc is not None and pc is not None
    cpus = {"env workers": rc.env_workers.min * ENV_WORKER_CPUS}
    gpus: dict[str, float] = {}
    if pc.kind in ("transformers", "vllm"):
        cpus["engines"], gpus["engines"] = pc.replicas * pc.num_cpus, pc.replicas * pc.num_gpus
    search = cfg.tools.search
    if tool == "calculate":
        cpus["calculator pool"] = cfg.tools.calculator.pool.min * TOOL_ACTOR_CPUS
    elif search is not None and search.kind != "replay":
        cpus["search pool"], gpus["search pool"] = search.pool.min * search.num_cpus, search.pool.min * search.num_gpus
    have = ray.cluster_resources()
    short = []
    for kind, need in (("CPU", cpus), ("GPU", gpus)):
        if sum(need.values()) > have.get(kind, 0) + 1e-9:
            parts = ", ".join(f"{k} {v:g}" for k, v in need.items() if v)
            short.append(f"{sum(need.values()):g} {kind}s ({parts}) but the cluster has {have.get(kind, 0):g}")
    if not short:
        return
    message = "this rollout needs at least " + "; ".join(short)
    if cfg.ray_address or os.environ.get("RAY_ADDRESS"):  # a cluster's autoscaler may still add nodes
        logging.getLogger(__name__).warning(message)
        return
    raise InputError(message + ": lower the num_cpus / num_gpus / pool sizes in the config")


def _start_tool_pools(cfg: RunConfig, tool: str, run_id: str) -> dict[str, tuple[str, object]]:
    """The elastic actor pool of the tool the task uses: {tool name: (pool actor name, pool handle)}."""
    import ray

    from actors.pool import ElasticPool
    from actors.tools import CalculatorActor, SearchActor

    manager = ray.remote(num_cpus=0, max_concurrency=1000)(ElasticPool)
    if tool == "calculate":
        calc = cfg.tools.calculator
        name = f"nat-ray-calculator-{run_id}"
        handle = manager.options(name=name).remote(
            CalculatorActor,
            {"timeout_s": calc.timeout_s},
            calc.pool.min,
            calc.pool.max,
            target_inflight=calc.target_inflight,
            num_cpus=TOOL_ACTOR_CPUS,
        )
        return {"calculate": (name, handle)}
    search = cfg.tools.search
    if search is None or search.kind == "replay":  # the replay tool lives inside each env worker
        return {}
    cache = cfg.search_cache_path()
    name = f"nat-ray-search-{run_id}"
    handle = manager.options(name=name).remote(
        SearchActor,
        {"config": search.model_dump(mode="json"), "cache_path": str(cache) if cache else None},
        search.pool.min,
        search.pool.max,
        target_inflight=search.target_inflight,
        num_cpus=search.num_cpus,
        num_gpus=search.num_gpus,
    )
    return {"search": (name, handle)}


def _check_endpoint(cfg: RunConfig) -> None:
    from nat_ray.policy import build_policy

    assert cfg.policy is not None and cfg.rollout is not None
    if cfg.policy.kind != "openai":
        return
    template = get_template(prompts_path(cfg), cfg.rollout.template)

    async def check() -> None:
        policy = build_policy(cfg.policy, template)  # type: ignore[arg-type]
        try:
            await policy.check()
        finally:
            await policy.aclose()

    try:
        asyncio.run(check())
    except PolicyError as exc:
        raise InputError(str(exc)) from None


def _init_ray(cfg: RunConfig) -> None:
    init_ray(cfg.ray_address)
    quiet_ray_data()  # the rollout has its own bar with episode counts
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def steady_rate(
    arrivals: list[tuple[float, int]], lo: float = 0.2, hi: float = 0.9, min_window_s: float = 1.0
) -> float | None:
    """Units/s between 20% and 90% of the total: the pool at speed, without actor start-up, first wave or tail.

    None when the arrivals are too few or too close together to time (everything finishing at once is no rate)."""
    if len(arrivals) < 3:
        return None
    total = arrivals[-1][1]
    start = next(a for a in arrivals if a[1] >= lo * total)
    end = next(a for a in arrivals if a[1] >= hi * total)
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] - start[0] >= min_window_s else None


class _EpisodeEvents:
    """Follows the env workers' per-episode events: advances the bar as each episode ends (not as Ray Data hands
    over a finished batch) and records when each arrived, for rates over real wall time."""

    def __init__(self, events, bar, started: float) -> None:  # type: ignore[no-untyped-def]
        import threading

        self.events, self.bar, self.started = events, bar, started
        self.episodes_at: list[tuple[float, int]] = []  # (seconds since start, episodes so far)
        self.calls_at: list[tuple[float, int]] = []  # (seconds since start, policy calls so far)
        self.counts = {"positive": 0, "negative": 0, "error": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        while True:
            try:
                items = [self.events.get(timeout=0.5)]
                items += self.events.get_nowait_batch(self.events.qsize())
            except queue.Empty:
                if self._stop.is_set():  # each episode puts its event before its batch returns: all are in
                    return
                continue
            except Exception:  # the queue actor is gone: the run is ending
                return
            now = time.monotonic() - self.started
            for label, calls in items:
                self.counts[label] = self.counts.get(label, 0) + 1
                n = (self.episodes_at[-1][1] if self.episodes_at else 0) + 1
                self.episodes_at.append((now, n))
                self.calls_at.append((now, (self.calls_at[-1][1] if self.calls_at else 0) + calls))
            if self.bar.n + len(items) <= self.bar.total:  # an episode run twice (a lost worker) counts once
                self.bar.update(len(items))
            self.bar.set_postfix(pos=self.counts["positive"], neg=self.counts["negative"], err=self.counts["error"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_rollout(cfg: RunConfig, progress: bool = True) -> dict:
    validate(cfg)
    rc, pc = cfg.rollout, cfg.policy
    assert rc is not None and pc is not None
    specs = plan_episodes(cfg)
    writer = TrajectoryWriter(cfg.trajectories_dir(), dump_config(cfg), identity(cfg), rc.flush_every)
    todo = [s for s in specs if s.key not in writer.done]
    if not todo:
        return writer.close(complete=True)
    _check_endpoint(cfg)
    _init_ray(cfg)

    import ray
    import ray.data
    from ray.util.queue import Queue
    from tqdm import tqdm

    from actors.engine import start_engines
    from actors.env_worker import EnvWorker

    run_id = uuid.uuid4().hex[:8]
    tool = get_task(rc.task).tool
    _check_resources(cfg, tool)
    pools = _start_tool_pools(cfg, tool, run_id)
    engines = start_engines(pc, run_id) if pc.kind in ("transformers", "vllm") else []
    engine_names = [f"nat-ray-engine-{run_id}-{i}" for i in range(len(engines))]
    # Enough batches per actor that its episode semaphore always has a backlog; twice that may be queued, which is
    # what Ray Data's autoscaler reads as "this pool needs more actors" (utilisation above 100%).
    concurrent = max(2, -(-2 * rc.episodes_per_worker // rc.batch_size))
    rows = [s.__dict__ for s in todo]
    events = Queue(actor_options={"num_cpus": 0})
    kwargs = {
        "config": dump_config(cfg),
        "tool_pools": {tool: name for tool, (name, _) in pools.items()},
        "engines": engine_names,
        "progress": events,
    }
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // rc.batch_size)).map_batches(
        EnvWorker,
        fn_constructor_kwargs=kwargs,
        batch_size=rc.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            min_size=rc.env_workers.min,
            max_size=rc.env_workers.max,
            max_tasks_in_flight_per_actor=2 * concurrent,
            max_concurrent_calls_per_actor=concurrent,
        ),
        num_cpus=ENV_WORKER_CPUS,
    )
    bar = tqdm(total=len(specs), initial=writer.resumed, unit="ep", disable=not progress, desc="rollout", mininterval=2)
    if progress:
        bar.write(f"rollout: {len(todo)} episodes to run; starting env workers (the first episodes take a while)")
    started = time.monotonic()
    follower = _EpisodeEvents(events, bar, started)
    complete = False
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            writer.add(batch)
        complete = True
    finally:
        follower.stop()
        bar.n = len(writer.done)  # what is in the output, whatever the events said
        bar.set_postfix(pos=writer.counts["positive"], neg=writer.counts["negative"], err=writer.counts["error"])
        bar.close()
        meta = writer.close(complete=complete and len(writer.done) >= len(specs))
        stats = {tool: ray.get(h.stats.remote()) for tool, (_, h) in pools.items()}
        if "search" in pools:
            stats["search"]["members"] = ray.get(pools["search"][1].member_stats.remote())
        for _, h in pools.values():
            ray.get(h.shutdown.remote())
        for h in [*(h for _, h in pools.values()), *engines]:
            ray.kill(h)
        events.shutdown()
    seconds = time.monotonic() - started
    run = len(writer.done) - writer.resumed
    meta["run"] = {
        "episodes_run": run,
        "resumed_from": writer.resumed,
        "seconds": round(seconds, 3),
        "episodes_per_s": run / seconds if seconds > 0 else None,  # over the whole wall time, start-up included
        "steady_episodes_per_s": steady_rate(follower.episodes_at),
        "steady_policy_calls_per_s": steady_rate(follower.calls_at),
        "tool_pools": stats,
        "out": str(Path(cfg.trajectories_dir())),
    }
    return meta
