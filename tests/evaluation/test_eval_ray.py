"""`nat-ray eval` on a real local Ray cluster: two data sets in one run, exactly-once resume after a killed driver,
and a checkpoint trained in this suite evaluated through the engine with ``template: auto``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.errors import InputError
from nat_ray.evaluation.driver import run_eval
from nat_ray.storage import read_trajectories
from tests.conftest import assert_exactly_once, run_until_killed

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/ci_eval_scripted.yaml"
pytestmark = pytest.mark.slow


def test_scripted_eval_on_two_sets_writes_metrics_and_trajectories(tmp_path: Path, ray_local) -> None:
    metrics = run_eval(load_config(CONFIG, [f"out={tmp_path}"]), progress=False)
    for name in ("gsm8k", "svamp"):
        trajs = assert_exactly_once(tmp_path / "eval" / name, 12)
        assert {t.temperature for t in trajs} == {0.2} and {t.task for t in trajs} == {name}
        m = metrics["datasets"][name]
        assert m["n"] == 12 and m["errors"] == 0
        assert m["accuracy"] == sum(bool(t.reward) for t in trajs) / 12
    saved = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert saved["template"] == "zero-shot" and saved["policy"]["kind"] == "scripted"
    assert saved["math_average"] == pytest.approx(
        (saved["datasets"]["gsm8k"]["accuracy"] + saved["datasets"]["svamp"]["accuracy"]) / 2
    )
    # the same eval again has nothing to run; other settings into the same output are refused before any work
    again = run_eval(load_config(CONFIG, [f"out={tmp_path}"]), progress=False)
    assert again["run"]["episodes_run"] == 0 and again["datasets"] == metrics["datasets"]
    with pytest.raises(InputError, match=r"made by a run with other settings \(temperature\)"):
        run_eval(load_config(CONFIG, [f"out={tmp_path}", "eval.temperature=0.7"]), progress=False)


def test_killed_eval_resumes_exactly_once(tmp_path: Path) -> None:
    args = [str(CONFIG), f"out={tmp_path}", "eval.limit=30", "policy.latency_s=0.4", "eval.flush_every=2"]
    args += ["eval.episodes_per_worker=4", "eval.env_workers={min: 1, max: 1}", "ray_address=local"]
    cmd = [sys.executable, "-m", "nat_ray.cli", "eval", "--no-progress", "--config", *args]
    parts = lambda: len(list((tmp_path / "eval").glob("*/part-*.parquet")))  # noqa: E731
    run_until_killed(cmd, lambda: parts() >= 3)
    before = sum(len(read_trajectories(d)) for d in (tmp_path / "eval").iterdir() if any(d.glob("part-*")))
    assert 0 < before < 60 and not (tmp_path / "eval/metrics.json").exists()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert metrics["run"]["resumed_from"] == before and metrics["run"]["episodes_run"] == 60 - before
    for name in ("gsm8k", "svamp"):
        assert_exactly_once(tmp_path / "eval" / name, 30)
        assert metrics["datasets"][name]["n"] == 30
    assert "gsm8k" in r.stdout and "math average" in r.stdout  # the printed table


def test_a_nat_checkpoint_is_evaluated_through_the_engine_with_its_hint(
    tmp_path: Path, smollm2: Path, strategyqa_files, ray_local
) -> None:
    """Train a tiny random model in NAT mode (a real `nat-ray train` run), then evaluate it on two data sets in
    one run: ``template: auto`` must pick the NAT template's correct hint, and the engine is started once."""
    from nat_ray.training.trainer import run_train
    from tests.conftest import strategyqa_nat_set
    from tests.training.test_train_ray import tiny_llama_folder

    data = strategyqa_nat_set(strategyqa_files, tmp_path, tmp_path / "nat.jsonl", pos=4, neg=4)
    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    train = [f"out={tmp_path}", f"train.model={model}", f"train.data={data}", "train.max_length=256"]
    train += ["train.global_batch_size=4", "train.micro_batch_size=2", "train.max_steps=1", "train.strategy=ddp"]
    train += ["train.compile=false"]  # a tiny model: compiling would take longer than its one step
    summary = run_train(load_config(REPO / "configs/train_smollm2_strategyqa_nat.yaml", train))
    checkpoint = Path(summary["out"])
    info = json.loads((checkpoint / "nat_ray_train.json").read_text())
    assert info["training_set"]["mode"] == "nat" and info["training_set"]["template"] == "zero-shot-target-aware"

    overrides = [
        f"out={tmp_path}",
        f"policy={{kind: transformers, model: '{checkpoint}', max_tokens: 12, max_batch_size: 8}}",
        "eval.template=auto",
        "eval.limit=3",
        "eval.max_turns=2",
        "eval.datasets=[gsm8k, multiarith]",
    ]
    metrics = run_eval(load_config(CONFIG, overrides), progress=False)
    assert metrics["template"] == "zero-shot-target-aware"
    assert metrics["policy"]["training"] == {"mode": "nat", "template": "zero-shot-target-aware"}
    assert metrics["run"]["engines_started"] == 1
    assert metrics["run"]["precision"].startswith("float32 (policy.dtype: float32") and metrics["run"]["machine"]["cpu"]
    for name in ("gsm8k", "multiarith"):
        trajs = assert_exactly_once(tmp_path / "eval" / name, 3)
        assert all(t.model == str(checkpoint) for t in trajs)
        assert metrics["datasets"][name]["n"] + metrics["datasets"][name]["errors"] == 3
    # eval.repeatable (the default): float32 whatever auto picks, so the same eval run with other batch company (one
    # episode at a time instead of six together) samples the same seeded transcripts, token for token
    assert metrics["policy"]["dtype"] == "float32" and metrics["policy"]["repeatable"] is True
    alone = [*overrides, f"eval.out={tmp_path / 'alone'}", "policy.max_batch_size=1", "eval.episodes_per_worker=1"]
    again = run_eval(load_config(CONFIG, alone), progress=False)
    assert again["datasets"]["gsm8k"]["accuracy"] == metrics["datasets"]["gsm8k"]["accuracy"]

    def transcripts(folder: Path) -> dict:  # every reply, the malformed last one included
        return {t.id: ([x.content for x in t.turns], t.malformed_reply) for t in read_trajectories(folder)}

    for name in ("gsm8k", "multiarith"):
        first, second = transcripts(tmp_path / "eval" / name), transcripts(tmp_path / "alone" / name)
        assert first == second and all(turns or reply for turns, reply in first.values())
    # a template the checkpoint was not trained with is allowed, with a warning naming both
    r = subprocess.run(
        [sys.executable, "-m", "nat_ray.cli", "eval", "--no-progress", "--config", str(CONFIG), *overrides,
         "eval.template=zero-shot", f"eval.out={tmp_path / 'plain'}", "eval.datasets=[gsm8k]", "eval.limit=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "'zero-shot' has no correct-answer hint" in r.stderr and "nat mode with 'zero-shot-target-aware'" in r.stderr
