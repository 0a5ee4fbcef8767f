"""The actors a stage needs, started and stopped in one place: tool pools, policy engines, the progress queue.

A driver opens an :class:`ActorSession` for the tools its tasks use and keeps it for as long as it has episodes to
run: eval loads a checkpoint into its engines once and evaluates every data set with them.

    with ActorSession(cfg.tools, cfg.policy, {"calculate", "search"}, env_workers_min=1, cache=...) as actors:
        ...  # EnvWorker(**actors.worker_kwargs(), settings=..., episodes_per_worker=...)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import ray

from actors.engine import engine_precision, start_engines
from actors.pool import ElasticPool
from actors.tools import CalculatorActor, SearchActor
from nat_ray.config import PolicyConfig
from nat_ray.engines import ENGINES
from nat_ray.errors import InputError
from nat_ray.tools.config import ToolsConfig

# Env workers mostly wait on the policy; a quarter CPU each lets many share a node with the engines and tools.
ENV_WORKER_CPUS = 0.25
TOOL_ACTOR_CPUS = 0.25


class ActorSession:
    def __init__(
        self,
        tools: ToolsConfig,
        policy: PolicyConfig,
        needs: set[str],
        env_workers_min: int = 1,
        search_cache: Path | None = None,
        on_cluster: bool = False,
    ) -> None:
        from ray.util.queue import Queue

        self.tools_cfg, self.policy_cfg, self.needs = tools, policy, needs
        self.run_id = uuid.uuid4().hex[:8]
        self._check_resources(env_workers_min, on_cluster)
        self.pools: dict[str, tuple[str, Any]] = {}
        self.engines: list[Any] = []
        self.precision: str | None = None  # what the engines compute in (an endpoint's is not ours to know)
        self.events: Any = None
        try:
            if "calculate" in needs:
                self.pools["calculate"] = self._calculator_pool()
            search = tools.search
            if "search" in needs and search is not None and search.kind != "replay":
                self.pools["search"] = self._search_pool(search_cache)
            if policy.kind in ENGINES:
                self.engines = start_engines(policy, self.run_id)
                self.precision = engine_precision(self.engines)  # asked once: the log and the records share it
                if self.precision is not None:  # which precision the engines chose, and why (the eval records it)
                    print(f"engine: {self.precision}", file=sys.stderr)
            # progress only: a restarted queue loses the events it held, never an episode
            self.events_name = f"nat-ray-events-{self.run_id}"
            self.events = Queue(
                actor_options={"name": self.events_name, "num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
            )
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ start-up

    def _check_resources(self, env_workers_min: int, on_cluster: bool) -> None:
        """The actors started at once must fit the cluster, or the env-worker pool waits for its workers forever."""
        pc, search = self.policy_cfg, self.tools_cfg.search
        cpus = {"env workers": env_workers_min * ENV_WORKER_CPUS}
        gpus: dict[str, float] = {}
        if pc.kind in ENGINES:
            cpus["engines"], gpus["engines"] = pc.replicas * pc.num_cpus, pc.replicas * pc.num_gpus
        if "calculate" in self.needs:
            cpus["calculator pool"] = self.tools_cfg.calculator.pool.min * TOOL_ACTOR_CPUS
        if "search" in self.needs and search is not None and search.kind != "replay":
            cpus["search pool"] = search.pool.min * search.num_cpus
            gpus["search pool"] = search.pool.min * search.num_gpus
        have = ray.cluster_resources()
        short = []
        for kind, need in (("CPU", cpus), ("GPU", gpus)):
            if sum(need.values()) > have.get(kind, 0) + 1e-9:
                parts = ", ".join(f"{k} {v:g}" for k, v in need.items() if v)
                short.append(f"{sum(need.values()):g} {kind}s ({parts}) but the cluster has {have.get(kind, 0):g}")
        if not short:
            return
        message = "this run needs at least " + "; ".join(short)
        if on_cluster or os.environ.get("RAY_ADDRESS"):  # a cluster's autoscaler may still add nodes
            logging.getLogger(__name__).warning(message)
            return
        raise InputError(message + ": lower the num_cpus / num_gpus / pool sizes in the config")

    def _manager(self, name: str) -> Any:
        # Restarted where Ray can place it when its process or node is lost; calls made meanwhile wait and are retried
        # (members_list, report_dead and stats are safe to repeat). A restarted manager starts a fresh set of members.
        return ray.remote(num_cpus=0, max_concurrency=1000, max_restarts=-1, max_task_retries=-1)(ElasticPool).options(
            name=name
        )

    def _calculator_pool(self) -> tuple[str, Any]:
        calc = self.tools_cfg.calculator
        name = f"nat-ray-calculator-{self.run_id}"
        handle = self._manager(name).remote(
            CalculatorActor,
            {"timeout_s": calc.timeout_s},
            calc.pool.min,
            calc.pool.max,
            target_inflight=calc.target_inflight,
            num_cpus=TOOL_ACTOR_CPUS,
        )
        return name, handle

    def _search_pool(self, cache: Path | None) -> tuple[str, Any]:
        search = self.tools_cfg.search
        assert search is not None
        name = f"nat-ray-search-{self.run_id}"
        handle = self._manager(name).remote(
            SearchActor,
            {"config": search.model_dump(mode="json"), "cache_path": str(cache) if cache else None},
            search.pool.min,
            search.pool.max,
            target_inflight=search.target_inflight,
            num_cpus=search.num_cpus,
            num_gpus=search.num_gpus,
        )
        return name, handle

    # ------------------------------------------------------------------ use

    def worker_kwargs(self) -> dict:
        """What every :class:`~actors.env_worker.EnvWorker` of this session is built with (besides its settings)."""
        search = self.tools_cfg.search
        replay = search.replay_from if search is not None and search.kind == "replay" else None
        return {
            "policy": self.policy_cfg,
            "tool_pools": {tool: name for tool, (name, _) in self.pools.items()},
            "engines": [f"nat-ray-engine-{self.run_id}-{i}" for i in range(len(self.engines))],
            "replay_search": replay if "search" in self.needs else None,
            "progress": self.events_name,
        }

    def stats(self) -> dict:
        """Tool pools' counters, how many engine actors this session started (once, for all its data sets) and what
        they compute in."""
        out: dict = {"engines_started": len(self.engines), "precision": self.precision}
        out |= {tool: ray.get(h.stats.remote()) for tool, (_, h) in self.pools.items()}
        if "search" in self.pools:
            out["search"]["members"] = ray.get(self.pools["search"][1].member_stats.remote())
        return out

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        for _, h in self.pools.values():
            with contextlib.suppress(Exception):  # a pool already gone has nothing left to stop
                ray.get(h.shutdown.remote())
        for h in [*(h for _, h in self.pools.values()), *self.engines]:
            ray.kill(h)
        if self.events is not None:
            self.events.shutdown(force=True)  # killed: a graceful exit would be retried (max_task_retries)
        self.pools, self.engines, self.events = {}, [], None

    def __enter__(self) -> ActorSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
