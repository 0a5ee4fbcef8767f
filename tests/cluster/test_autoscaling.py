"""Elastic rollouts on Ray's own autoscaler: a head with one CPU and a ``cpu_rollout`` worker type with
``min_workers: 0`` (Ray's fake multi-node provider: each node is a real raylet on this machine, started and stopped
by the autoscaler). A rollout whose env-worker pool wants more than the head has makes the autoscaler add nodes; one
of them is lost mid-rollout (its raylet SIGKILLed, as a reclaimed spot instance); its episodes run again elsewhere,
each exactly once, the run completes by itself, and the idle nodes are removed afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.head import free_port, local_head
from tests.conftest import assert_exactly_once, run_killing

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/ci_rollout_gsm8k_scripted.yaml"
pytestmark = pytest.mark.slow


def _autoscaling_config(gcs: str) -> dict:
    return {
        "cluster_name": "nat-ray-fake",
        "max_workers": 3,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            # the rollout type of ray_cluster.yaml, scaled down: env workers and tool actors land here
            "cpu_rollout": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 3},
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def _nodes(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _worker_raylets(head_node: str) -> list:
    """The raylet processes of the worker nodes the autoscaler started (not the head's)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "/raylet/raylet " in cmd and "--node_id=fffff" in cmd and head_node not in cmd:
            found.append(p)
    return found


def test_autoscaler_adds_nodes_under_load_removes_them_idle_and_a_lost_node_loses_no_episode(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "autoscaling.json"
    config.write_text(json.dumps(_autoscaling_config(f"127.0.0.1:{port}")))
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with local_head(
        num_cpus=1, env=env, port=port, dashboard=False, extra_args=(f"--autoscaling-config={config}",)
    ) as head:
        gcs = head.gcs
        nodes_log = tmp_path / "nodes.jsonl"
        watcher = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.watch_nodes", gcs, str(nodes_log)], cwd=REPO, env=head.env
        )
        try:
            deadline = time.monotonic() + 300  # leaves at the first line; the margin is for a loaded CI machine
            while not _nodes(nodes_log) and watcher.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            head_node = _nodes(nodes_log)[0]["alive"][0]

            # 12 env workers x 0.25 CPU + the calculator pool: three times what the head has
            out = tmp_path / "run"
            args = [f"out={out}", "rollout.limit=60", "policy.latency_s=0.5", "rollout.flush_every=4"]
            args += ["rollout.env_workers={min: 12, max: 12}", "rollout.episodes_per_worker=2", "rollout.batch_size=2"]
            cmd = [sys.executable, "-m", "nat_ray.cli", "rollout", "--no-progress", "--config", str(CONFIG), *args]
            lost: list[int] = []

            def lose_a_node() -> bool:
                # once a worker node runs episodes and some are written, take one node away for good
                parts = list((out / "trajectories").glob("part-*.parquet"))
                raylets = _worker_raylets(head_node)
                if len(parts) >= 2 and raylets:
                    os.kill(raylets[0].pid, signal.SIGKILL)
                    lost.append(raylets[0].pid)
                    return True
                return False

            env = {**head.env, "RAY_ADDRESS": gcs}
            r = run_killing(
                lambda: subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600),
                lose_a_node,
            )
            assert r.returncode == 0, r.stderr[-3000:]
            assert lost, "no worker node was lost"
            assert_exactly_once(out / "trajectories", 180)
            summary = json.loads(r.stdout.strip().splitlines()[-1])
            assert summary["error"] == 0 and summary["complete"], summary

            # idle: the autoscaler removes the workers (idle_timeout_minutes 0.1)
            deadline = time.monotonic() + 120
            while _nodes(nodes_log)[-1]["alive"] != [head_node] and time.monotonic() < deadline:
                time.sleep(1)
            history = _nodes(nodes_log)
            print("nodes over time:", [(h["t"], len(h["alive"])) for h in history])
            assert max(len(h["alive"]) for h in history) >= 3, history  # the head and at least two added nodes
            assert history[-1]["alive"] == [head_node], history
        finally:
            watcher.kill()
            watcher.wait()
