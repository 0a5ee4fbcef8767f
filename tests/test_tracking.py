"""The MLflow tracker on hand-made stage outputs (the pipeline's own run is read back in
tests/pipeline/test_pipeline_ray.py), a tracker that cannot be reached, and the config's checks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from nat_ray.config_sections import TrackingConfig
from nat_ray.records import METRICS, TRAIN_LOG, TRAIN_RECORD, EvalMetrics, StageManifest, TrainingRecord
from nat_ray.storage import write_record
from nat_ray.tracking import MlflowTracker, NoTracker, eval_metric_values, flatten, make_tracker


def _train_folder(folder: Path) -> StageManifest:
    folder.mkdir(parents=True)
    steps = [
        {"step": s, "loss": 3.0 / s, "lr": 1e-4 * s, "tokens_per_s": 100.0 + s, "peak_rss_gb": 1.5} for s in (1, 2, 3)
    ]
    (folder / TRAIN_LOG).write_text("".join(json.dumps(x) + "\n" for x in steps))
    write_record(folder / TRAIN_RECORD, TrainingRecord.new(train={}, step=3, total_steps=3, tokens_seen=900))
    config = {"lr": 1e-4, "strategy": "ddp"}
    when = "2026-12-02T06:00:00Z"
    return StageManifest(stage="train", variant="nat", config_hash="abc", config=config, counts={"step": 3},
                         seconds=12.5, started_at=when, complete=True)  # fmt: skip


def _eval_folder(folder: Path) -> StageManifest:
    folder.mkdir(parents=True)
    datasets = {"gsm8k": {"n": 10, "accuracy": 0.3, "accuracy_ci95": [0.1, 0.6], "errors": 0, "avg_turns": 2.5}}
    write_record(folder / METRICS, EvalMetrics.new(datasets=datasets, math_average=0.3))
    return StageManifest(stage="eval", variant="nat", config_hash="def", counts={"gsm8k.accuracy": 0.3},
                         machine={"cpu": "AMD EPYC", "cpus": 2, "bf16": ["avx512_bf16"]}, complete=True)  # fmt: skip


def test_a_pipeline_s_stages_read_back_through_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    warnings: list[str] = []
    tracker = MlflowTracker(TrackingConfig(kind="mlflow"), tmp_path / "run", warn=warnings.append)
    tracker.start("run", {"train": {"lr": 1e-4, "seeds": [1, 2]}, "tracking": {"kind": "mlflow"}})
    tracker.stage(_train_folder(tmp_path / "train"), tmp_path / "train", "ran")
    tracker.stage(_eval_folder(tmp_path / "eval"), tmp_path / "eval", "skipped")
    (tmp_path / "report").mkdir()
    (tmp_path / "report/table.md").write_text("| variant |\n")
    tracker.artifacts(tmp_path / "report", "report")
    tracker.end(ok=True)
    assert warnings == []

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run/mlflow.db'}")  # the local store: in the run
    runs = client.search_runs([client.get_experiment_by_name("nat-ray").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "run")
    assert parent.info.status == "FINISHED" and parent.data.params["train.seeds"] == "[1, 2]"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"train nat", "eval nat"}
    train = children["train nat"]
    assert train.data.params == {"lr": "0.0001", "strategy": "ddp"} and train.data.tags["nat_ray.status"] == "ran"
    assert [(m.step, m.value) for m in client.get_metric_history(train.info.run_id, "loss")] == [(1, 3.0), (2, 1.5),
                                                                                                  (3, 1.0)]  # fmt: skip
    assert train.data.metrics["tokens_seen"] == 900 and train.data.metrics["stage_seconds"] == 12.5
    assert train.info.end_time - train.info.start_time == 12500
    ev = children["eval nat"].data
    assert ev.metrics["gsm8k.accuracy_ci95_low"] == 0.1 and ev.metrics["math_average"] == 0.3
    assert ev.tags["nat_ray.status"] == "skipped" and ev.tags["nat_ray.cpu"] == "AMD EPYC"  # where it ran
    assert train.data.tags["nat_ray.cpu"] == ""  # a stage recorded before machines were
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "report")] == ["report/table.md"]
    assert (tmp_path / "run/mlartifacts").is_dir()


def test_an_unreachable_tracker_costs_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    warnings: list[str] = []
    cfg = TrackingConfig(kind="mlflow", uri=f"http://127.0.0.1:{port}")
    tracker = MlflowTracker(cfg, tmp_path, warn=warnings.append)
    tracker.start("run", {"a": 1})
    tracker.stage(_eval_folder(tmp_path / "eval"), tmp_path / "eval", "ran")
    tracker.end(ok=True)
    assert len(warnings) == 1 and f"127.0.0.1:{port}: cannot connect" in warnings[0] and "goes on" in warnings[0]


def test_tracking_config_and_helpers() -> None:
    assert isinstance(make_tracker(TrackingConfig(), Path("x")), NoTracker)
    with pytest.raises(ValidationError, match="carries a credential"):
        TrackingConfig(kind="mlflow", uri="https://user:secret@mlflow.example.com")
    with pytest.raises(ValidationError):
        TrackingConfig(kind="wandb")  # type: ignore[arg-type]
    assert dict(flatten({"a": {"b": 1, "c": [1, 2]}, "d": None})) == {"a.b": 1, "a.c": [1, 2], "d": None}
    m = EvalMetrics.new(datasets={"hotpotqa": {"accuracy": None, "f1": 0.5, "finish_reasons": {"finish": 3}}})
    assert eval_metric_values(m) == {"hotpotqa.f1": 0.5}
