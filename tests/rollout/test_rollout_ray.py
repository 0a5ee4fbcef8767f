"""The rollout on a real local Ray cluster: exactly-once output under real kills, resume, errors, bad config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.errors import InputError
from nat_ray.rollout.driver import run_rollout
from nat_ray.storage import read_trajectories
from nat_ray.types import Label
from tests.conftest import assert_exactly_once, own_processes, run_killing, run_until_killed
from tests.policy.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/ci_rollout_gsm8k_scripted.yaml"
pytestmark = pytest.mark.slow


def _cfg(tmp_path: Path, *overrides: str):
    return load_config(CONFIG, [f"out={tmp_path}", *overrides])


def test_scripted_rollout_writes_each_episode_once(tmp_path: Path, ray_local) -> None:
    meta = run_rollout(_cfg(tmp_path, "rollout.limit=8"), progress=False)
    trajs = assert_exactly_once(tmp_path / "trajectories", 24)
    assert meta["complete"] and meta["counts"]["trajectories"] == 24 and meta["counts"]["error"] == 0
    assert {t.label for t in trajs} <= {Label.POSITIVE, Label.NEGATIVE}
    assert {t.temperature for t in trajs} == {0.2, 0.5, 0.7}
    assert all(t.turns[1].content.startswith("Observation: ") for t in trajs)  # real calculator observations
    saved = json.loads((tmp_path / "trajectories/_manifest.json").read_text())
    assert saved["config"]["rollout"]["limit"] == 8 and saved["complete"] is True
    # a second run over the same output has nothing left to do
    again = run_rollout(_cfg(tmp_path, "rollout.limit=8"), progress=False)
    assert again["counts"]["trajectories"] == 24 and "run" not in again


def _parts(out: Path) -> int:
    return len(list(out.glob("part-*.parquet")))


def _sigkill_actor_process(title: str) -> list[int]:
    """SIGKILL the worker process of an actor (Ray titles it "ray::<class name>"), as a lost node or OOM would."""
    for pid in own_processes(title):  # this test's cluster only
        os.kill(pid, signal.SIGKILL)
        return [pid]
    return []


def _rollout_killing(cfg, out: Path, title: str, after_parts: int) -> dict:  # type: ignore[no-untyped-def]
    """Run the rollout; once ``after_parts`` parts are written, SIGKILL the process of the actor titled ``title``."""
    killed: list[int] = []

    def kill() -> bool:
        if _parts(out) < after_parts:
            return False
        killed.extend(_sigkill_actor_process(title))
        return True  # one try: a process not found is the failure asserted below

    meta = run_killing(lambda: run_rollout(cfg, progress=False), kill)
    assert killed, f"no {title} process was killed"
    return meta


def test_killed_env_worker_process_loses_and_duplicates_nothing(tmp_path: Path, ray_local) -> None:
    out = tmp_path / "trajectories"
    cfg = _cfg(tmp_path, "rollout.limit=24", "policy.latency_s=0.3", "rollout.flush_every=4", "rollout.batch_size=2")
    meta = _rollout_killing(cfg, out, "EnvWorker", after_parts=2)
    assert_exactly_once(out, 72)
    assert meta["complete"] and meta["counts"]["error"] == 0


def test_ray_killed_calculator_actor_is_replaced(tmp_path: Path, ray_local) -> None:
    import ray

    killed: list[str] = []

    def kill_a_calculator() -> bool:
        if _parts(out) < 1:
            return False
        for name in ray.util.list_named_actors():
            if name.startswith("nat-ray-calculator-") and "/" in name:  # pool members are "<pool>/<n>"
                ray.kill(ray.get_actor(name))
                killed.append(name)
                break
        return True  # one try, as for the process kills

    out = tmp_path / "trajectories"
    cfg = _cfg(tmp_path, "rollout.limit=24", "policy.latency_s=0.3", "rollout.flush_every=4")
    meta = run_killing(lambda: run_rollout(cfg, progress=False), kill_a_calculator)
    assert killed
    assert_exactly_once(out, 72)
    assert meta["counts"]["error"] == 0
    assert meta["run"]["tool_pools"]["calculate"]["replaced"] >= 1


def test_calculator_pool_manager_process_lost_mid_rollout_is_survived(tmp_path: Path, ray_local) -> None:
    """The pool's manager actor dies with its process: it restarts, starts new members (the old ones died with it,
    their owner), and the rollout finishes by itself with every episode once and none labelled error."""
    out = tmp_path / "trajectories"
    cfg = _cfg(tmp_path, "rollout.limit=40", "policy.latency_s=0.3", "rollout.flush_every=4")
    meta = _rollout_killing(cfg, out, "ray::ElasticPool", after_parts=2)
    assert_exactly_once(out, 120)
    assert meta["complete"] and meta["counts"]["error"] == 0


def test_engine_process_lost_mid_rollout_is_survived(tmp_path: Path, smollm2: Path, ray_local) -> None:
    """The in-cluster engine (a tiny random Llama behind HFEngine) dies with its process mid-rollout: Ray restarts it,
    its in-flight generations are retried, and no episode is lost, duplicated or labelled error."""
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    out = tmp_path / "trajectories"
    policy = f"policy={{kind: transformers, model: '{model}', max_tokens: 24, max_batch_size: 8, num_cpus: 0.5}}"
    cfg = _cfg(tmp_path, "rollout.limit=16", "rollout.temperatures=[0.7]", "rollout.flush_every=2", policy)
    meta = _rollout_killing(cfg, out, "ray::HFEngine", after_parts=1)
    assert_exactly_once(out, 16)
    assert meta["complete"] and meta["counts"]["error"] == 0


def test_driver_killed_and_restarted_resumes(tmp_path: Path) -> None:
    out = tmp_path / "trajectories"
    args = [str(CONFIG), f"out={tmp_path}", "rollout.limit=40", "policy.latency_s=0.5", "rollout.flush_every=4"]
    args += ["rollout.episodes_per_worker=4", "rollout.env_workers={min: 1, max: 1}", "ray_address=local"]
    cmd = [sys.executable, "-m", "nat_ray.cli", "rollout", "--no-progress", "--config", *args]
    run_until_killed(cmd, lambda: _parts(out) >= 3)
    done_before = len(read_trajectories(out))
    assert 0 < done_before < 120
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == done_before and summary["episodes_run"] == 120 - done_before
    assert_exactly_once(out, 120)


def test_infrastructure_failures_are_labelled_error_and_reported(tmp_path: Path, ray_local) -> None:
    with FakeOpenAI() as srv:
        srv.script = [500] * 1000
        cfg = _cfg(
            tmp_path,
            "rollout.limit=4",
            "policy={kind: openai, model: fake-model, max_retries: 1, base_url: " + srv.base_url + "}",
        )
        meta = run_rollout(cfg, progress=False)
    trajs = assert_exactly_once(tmp_path / "trajectories", 12)
    assert meta["counts"] == {"trajectories": 12, "positive": 0, "negative": 0, "error": 12}
    assert all(t.label == Label.ERROR and t.reward is None for t in trajs)
    assert all("no answer after 2 attempts" in (t.error or "") for t in trajs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy={kind: llama}"], "policy.kind"),
        (["policy={kind: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}"], "unreachable"),
        (["policy={kind: transformers, model: /nonexistent/model}"], "does not exist"),
        (["rollout.task=hotpotqa"], "needs the search tool"),
        (["rollout.template=nope"], "unknown template 'nope'"),
    ],
)
def test_bad_config_fails_before_work_starts(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        run_rollout(_cfg(tmp_path, *overrides), progress=False)
    assert not list(tmp_path.glob("trajectories/part-*"))


def test_resume_refuses_an_output_made_with_other_settings(tmp_path: Path, ray_local) -> None:
    run_rollout(_cfg(tmp_path, "rollout.limit=2"), progress=False)
    with pytest.raises(InputError, match="other settings"):
        run_rollout(_cfg(tmp_path, "rollout.limit=2", "rollout.max_turns=3"), progress=False)
