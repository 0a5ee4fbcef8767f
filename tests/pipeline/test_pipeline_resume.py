"""A pipeline process killed (SIGKILL) between two stages and then inside one, started again each time: finished
stages are not redone, the interrupted eval keeps what it wrote, and every episode is in the output exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nat_ray.records import read_stage
from tests.conftest import assert_exactly_once

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run_until(cmd: list[str], killed_when: Callable[[], bool], timeout: float = 600) -> None:
    """Start the pipeline and SIGKILL its whole process group (driver, Ray, workers) once ``killed_when()``."""
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not killed_when() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _complete(folder: Path) -> bool:
    stage = read_stage(folder)
    return stage is not None and stage.complete


def test_pipeline_killed_between_and_inside_stages_resumes(tmp_path: Path, smollm2: Path, search_index: Path) -> None:
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    run = tmp_path / "run"
    args = [f"out={run}", f"train.model={model}", f"tools.search.index.path={search_index}", "ray_address=local"]
    # one episode at a time, each written as it ends: the eval is long enough to be caught in the middle
    args += ["eval.limit=24", "eval.flush_every=1", "eval.episodes_per_worker=1", "study.teacher=false"]
    cmd = [sys.executable, "-m", "nat_ray.cli", "pipeline", "--config", str(REPO / "configs/ci_pipeline.yaml"), *args]

    # 1. killed between stages: right after the vanilla model is written
    _run_until(cmd, lambda: _complete(run / "models/vanilla"))
    done = {f: read_stage(run / f) for f in ("trajectories", "sets/vanilla", "models/vanilla")}
    assert all(s is not None and s.complete for s in done.values())

    # 2. killed inside a stage: the nat model's eval, after some of its episodes are written
    def nat_eval_half_done() -> bool:
        return len(list((run / "eval/nat/strategyqa").glob("part-*.parquet"))) >= 3

    _run_until(cmd, nat_eval_half_done)
    partial = read_stage(run / "eval/nat")
    assert partial is not None and not partial.complete and not (run / "eval/nat/metrics.json").exists()
    for folder, stage in done.items():  # not redone by the second run
        assert read_stage(run / folder) == stage, folder

    # 3. started again: runs to the end, resuming the eval where it stopped
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pipeline: eval nat: resuming" in r.stdout and "pipeline: train vanilla: up to date, skipped" in r.stdout
    for folder, stage in done.items():
        assert read_stage(run / folder) == stage, folder
    metrics = json.loads((run / "eval/nat/metrics.json").read_text())
    assert metrics["run"]["resumed_from"] >= 3 and metrics["run"]["episodes_run"] == 24 - metrics["run"]["resumed_from"]
    assert_exactly_once(run / "eval/nat/strategyqa", 24)
    for folder in ("models/nat", "eval/vanilla", "eval/nat", "eval/base", "report"):
        assert _complete(run / folder), folder
    assert "| nat |" in (run / "report/table.md").read_text()
