"""`ray job submit` of a small pipeline to a real head (`ray start --head`, token authentication on), the command
cluster/README.md shows: the job joins that cluster (not an embedded one), runs every stage, and its report and
outputs are where the config put them, with the head's token in none of them nor in any log; each finished stage is
mirrored to `storage` (a pyarrow.fs URI), from which a run elsewhere with no local `out` (a new head) gets every
stage back instead of redoing it. The head is stopped when the test ends, passed or failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nat_ray.records import read_stage
from nat_ray.tasks import resolve_data_dir
from tests.cluster.head import local_head
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_pipeline_submitted_as_a_ray_job(tmp_path: Path, smollm2: Path, search_index: Path) -> None:
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    out = tmp_path / "run"
    # the nodes' environment says where the data and the prepared models are (ray_cluster.yaml sets it on a cluster)
    node_env = {"NAT_RAY_DATA_DIR": str(resolve_data_dir()), "NAT_RAY_MODELS_DIR": str(smollm2.parent)}
    with local_head(num_cpus=4, env=node_env) as head:
        bucket = tmp_path / "bucket"
        overrides = [f"out={out}", f"train.model={model}", f"tools.search.index.path={search_index}"]
        # one variant (NAT) and the teacher's row: every kind of stage, at half the ci_pipeline's cost
        overrides += [f"storage=file://{bucket}", "study={modes: [nat], base: false, teacher: true}"]
        r = head.ray(
            "job", "submit", "--address", head.dashboard, "--working-dir", ".",
            "--runtime-env", "cluster/runtime_env.yaml", "--submission-id", "nat-ray-ci",
            "--", "nat-ray", "pipeline", "--config", "configs/ci_pipeline.yaml", *overrides,
            cwd=REPO,
        )  # fmt: skip
        logs = head.ray("job", "logs", "--address", head.dashboard, "nat-ray-ci", timeout=60).stdout
        status = head.ray("job", "status", "--address", head.dashboard, "nat-ray-ci", timeout=60).stdout
        assert r.returncode == 0 and "succeeded" in status.lower(), f"{r.stderr[-3000:]}\n{logs[-3000:]}"
        # every stage joined the head's cluster (one node, its 4 CPUs) instead of starting its own
        assert "ray: joined the cluster at" in logs and "(1 nodes, 4 CPUs)" in logs, logs[-3000:]
        assert "started a local" not in logs and "pipeline: report: done" in logs
        # the upload (unpacked on the head) is the source and configs, not .venv / runs / caches
        unpacked = head.temp_dir.glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*")
        pkgs = [p for p in unpacked if p.is_dir() and (p / "configs/ci_pipeline.yaml").is_file()]
        assert pkgs, list(head.temp_dir.glob("session_*/runtime_resources/working_dir_files/*"))
        for pkg in pkgs:
            files = [f for f in pkg.rglob("*") if f.is_file()]
            assert not any(part in (".venv", "runs", ".git") for f in files for part in f.relative_to(pkg).parts)
            assert sum(f.stat().st_size for f in files) < 20e6
        # the head's token reached the job (it joined the cluster) but none of its logs, records or reports
        head.assert_token_absent(out, bucket, r.stdout, r.stderr, logs, status)
    stages = ["trajectories", "sets/nat", "models/nat", "eval/nat", "eval/teacher", "report"]
    for folder in stages:
        stage = read_stage(out / folder)
        assert stage is not None and stage.complete, folder
    table = (out / "report/table.md").read_text()
    assert "| nat |" in table and "| teacher |" in table
    metrics = json.loads((out / "eval/nat/metrics.json").read_text())
    assert metrics["datasets"]["strategyqa"]["n"] + metrics["datasets"]["strategyqa"]["errors"] == 4

    # the head is gone and so is the local run folder: the mirror has every stage, so nothing is redone
    shutil.rmtree(out)
    r = run_cli("pipeline", "--config", "configs/ci_pipeline.yaml", *overrides)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("downloaded from file://") == len(stages) and "running" not in r.stdout, r.stdout
    assert r.stdout.count("up to date, skipped") == len(stages)
    assert "| teacher | 45.9 [43.9, 47.9] (n=2333) |" in r.stdout
