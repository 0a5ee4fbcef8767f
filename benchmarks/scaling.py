"""Rollout scaling over nodes: a fixed-latency scripted rollout on 1 vs 3 worker nodes of a local multi-node cluster.

    python benchmarks/scaling.py [--quick] [--json PATH]

Each run builds a fresh `ray.cluster_utils.Cluster` (real raylets on this machine): a head with no CPUs (the driver
and the pools' managers only) and N worker nodes with the same resources (2 CPUs each). The rollout is
`configs/ci_rollout_gsm8k_scripted.yaml` with the scripted policy at a fixed 1 s per reply and the real calculator
pool; it gets 4 env workers per node (0.25 CPU each) x 4 concurrent episodes, and 3x the episodes on 3 nodes, so
with no scheduling or cross-node cost the 3-node run is 3x as fast. The scripted policy only waits, so this measures
Ray's scheduling and cross-node traffic (batches, tool calls to pools on other nodes), not this machine's 2 cores.
The clusters use token authentication, with a token of their own in the run's temp dir (not ~/.ray).

JSON key: ``scale_efficiency`` = steady episodes/s on 3 nodes / (3 x steady episodes/s on 1 node) (target >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nat_ray.ray_init import private_token_env
from nat_ray.storage import write_json

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/ci_rollout_gsm8k_scripted.yaml"
CPUS_PER_NODE = 2
WORKERS_PER_NODE = 4
EPISODES_PER_WORKER = 4


def run_on(nodes: int, episodes_per_node: int, out: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from nat_ray.config import load_config
    from nat_ray.rollout.driver import run_rollout

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=CPUS_PER_NODE)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        workers = WORKERS_PER_NODE * nodes
        overrides = [
            f"out={out}",
            f"ray_address={cluster.address}",
            f"rollout.limit={episodes_per_node * nodes // 3}",  # x 3 temperatures
            f"rollout.env_workers={{min: {workers}, max: {workers}}}",
            f"rollout.episodes_per_worker={EPISODES_PER_WORKER}",
            "rollout.batch_size=4",
            "rollout.flush_every=64",
            "policy.latency_s=1.0",
            f"tools.calculator.pool={{min: {nodes}, max: {2 * nodes}}}",
        ]
        meta = run_rollout(load_config(CONFIG, overrides), progress=False)
        run = meta["run"]
        return {
            "nodes": nodes,
            "env_workers": workers,
            "episodes": run["episodes_run"],
            "seconds": run["seconds"],
            "steady_episodes_per_s": run["steady_episodes_per_s"],
            "episodes_per_s": run["episodes_per_s"],
            "errors": meta["counts"]["error"],
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes (a check that it runs, not a figure)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    per_node = 36 if args.quick else 180  # a multiple of the 3 temperatures
    with tempfile.TemporaryDirectory() as tmp:
        # before Ray is imported: every node of both clusters, and the driver, get this token
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update(private_token_env(Path(tmp)))
        one = run_on(1, per_node, Path(tmp) / "one")
        print(f"1 node : {one}", flush=True)
        three = run_on(3, per_node, Path(tmp) / "three")
        print(f"3 nodes: {three}", flush=True)
    efficiency = three["steady_episodes_per_s"] / (3 * one["steady_episodes_per_s"])
    result = {"scale_efficiency": round(efficiency, 3), "one_node": one, "three_nodes": three, "quick": args.quick}
    print(f"scale_efficiency {efficiency:.3f} (target >= 0.8)")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
