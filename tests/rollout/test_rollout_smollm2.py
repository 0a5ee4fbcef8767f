"""Rollouts with a real small LLM (SmolLM2-135M-Instruct): through `transformers serve` and through the engine actor."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.policy.serve import transformers_serve
from nat_ray.rollout.driver import run_rollout
from nat_ray.storage import read_trajectories
from nat_ray.types import FinishReason, Label

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(smollm2: Path):
    with transformers_serve(smollm2) as base_url:
        yield base_url


COMMON = [
    "rollout.split=test",
    "rollout.limit=8",
    "rollout.temperatures=[0.2, 0.7]",
    "rollout.template=one-shot",
    "rollout.max_turns=3",
    "rollout.episodes_per_worker=16",
    "rollout.batch_size=2",
]


def _check_trajectories(out: Path, model: str, n: int = 16) -> list:
    trajs = read_trajectories(out)
    assert len(trajs) == n and len({t.episode_key for t in trajs}) == n
    assert {t.temperature for t in trajs} == {0.2, 0.7}
    for t in trajs:
        assert t.label in (Label.POSITIVE, Label.NEGATIVE), t.error  # graded, no infrastructure errors
        assert t.reward is not None and t.finish_reason is not None and t.model == model
        assert t.task == "gsm8k" and t.ground_truth and t.question
        roles = [x.role for x in t.turns]
        assert roles == ["assistant", "user"] * (len(roles) // 2)  # replies and observations alternate
        assert all(x.loss == (x.role == "assistant") for x in t.turns)
        assert all(x.content.startswith("Observation: ") for x in t.turns if x.role == "user")
        if t.finish_reason == FinishReason.FINISH:
            assert t.prediction is not None
    return trajs


def test_rollout_through_transformers_serve(tmp_path: Path, served: str, smollm2: Path, ray_local) -> None:
    policy = f"policy={{kind: openai, base_url: '{served}', model: auto, max_tokens: 48, max_concurrency: 16}}"
    # a quarter of the engine test's questions: the served policy is the slowest in the suite; 4 episodes (2
    # questions x 2 temperatures, at once through the server) cover its path
    args = [f"out={tmp_path}", policy, *COMMON, "rollout.limit=2"]
    meta = run_rollout(load_config(REPO / "configs/rollout_gsm8k_smollm2.yaml", args))
    assert meta["complete"] and meta["counts"]["error"] == 0
    _check_trajectories(tmp_path / "trajectories", model=str(smollm2), n=4)


def test_rollout_through_the_engine_actor(tmp_path: Path, smollm2: Path, ray_local) -> None:
    policy = f"policy={{kind: transformers, model: '{smollm2}', max_tokens: 48, max_batch_size: 16, num_cpus: 1}}"
    meta = run_rollout(load_config(REPO / "configs/rollout_gsm8k_engine.yaml", [f"out={tmp_path}", policy, *COMMON]))
    assert meta["complete"] and meta["counts"]["error"] == 0
    _check_trajectories(tmp_path / "trajectories", model=str(smollm2))
