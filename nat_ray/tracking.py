"""Experiment tracking: the pipeline's runs in MLflow, beside the files of the run folder.

A pipeline run is a parent run (its whole config as params); each stage a child run, logged when the stage completes
or is found up to date: its config view as params, its counts as metrics, tags for stage / variant / status / config
hash; a training stage adds loss, learning rate, tokens/s and peak memory per logged step (rank 0's
``metrics.jsonl``, which the workers already reduce over all ranks) and its final figures; an eval stage every metric
of every data set. The report's tables and plots are the parent's artifacts.

With ``tracking.uri`` unset the store is local, inside the run folder (``mlflow.db``, artifacts in ``mlartifacts/``):
``mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db`` shows it. A tracker that cannot be reached, or that fails
later, costs one warning: the run goes on and its files are complete either way.

Trackers sit behind :class:`Tracker` in :data:`TRACKERS`; this module is core (no Ray, no pipeline imports).
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from nat_ray.config_sections import TrackingConfig
from nat_ray.errors import InputError
from nat_ray.records import METRICS, TRAIN_LOG, TRAIN_RECORD, EvalMetrics, RunLayout, StageManifest, TrainingRecord
from nat_ray.storage import read_record, read_records

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
STEP_METRICS = ("loss", "lr", "tokens_per_s", "peak_rss_gb", "padding_efficiency")
FINAL_METRICS = ("final_loss", "tokens_seen", "wall_seconds", "train_seconds", "dev_perplexity", "peak_rss_gb")


class Tracker(Protocol):
    def start(self, name: str, config: dict) -> None: ...
    def stage(self, stage: StageManifest, folder: Path, status: str) -> None: ...
    def artifacts(self, folder: Path, path: str) -> None: ...
    def end(self, ok: bool) -> None: ...


class NoTracker:
    """``tracking.kind: none``."""

    def start(self, name: str, config: dict) -> None:
        pass

    def stage(self, stage: StageManifest, folder: Path, status: str) -> None:
        pass

    def artifacts(self, folder: Path, path: str) -> None:
        pass

    def end(self, ok: bool) -> None:
        pass


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``("a.b", 1)``; lists stay one value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value == value:  # NaN is not a metric
        return float(value)
    return None


def eval_metric_values(metrics: EvalMetrics) -> dict[str, float]:
    """Every numeric metric of every data set, ``<dataset>.<metric>`` (the interval as ``…ci95_low`` / ``_high``)."""
    out: dict[str, float] = {}
    for name, m in metrics.datasets.items():
        for key, value in m.items():
            if key == "accuracy_ci95" and isinstance(value, list | tuple) and len(value) == 2:
                out[f"{name}.accuracy_ci95_low"], out[f"{name}.accuracy_ci95_high"] = map(float, value)
            elif (x := _number(value)) is not None:
                out[f"{name}.{key}"] = x
    if metrics.math_average is not None:
        out["math_average"] = metrics.math_average
    return out


def _warn_once(method: Callable) -> Callable:
    @functools.wraps(method)
    def guarded(self: MlflowTracker, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # a tracker must never stop the run it watches
            self.disable(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return None

    return guarded


class MlflowTracker:
    """MLflow through its client API (no global active run, so a library call never leaks state into the user's)."""

    def __init__(self, cfg: TrackingConfig, out: Path, warn: Callable[[str], None] | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise InputError(
                "tracking.kind: mlflow needs MLflow: pip install 'nat-ray[tracking]' (scripts/setup.sh installs it)"
            ) from None
        self.warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
        layout = RunLayout(out.resolve())
        self.uri = cfg.uri or f"sqlite:///{layout.tracking_store}"
        self.artifact_location = None if cfg.uri else layout.tracking_artifacts.as_uri()
        self.experiment = cfg.experiment
        self.parent: str | None = None
        # a server that is down must not cost minutes of retries per call
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        for name in ("mlflow", "alembic"):  # table creation and migration notes: not the pipeline's business
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client: Any = MlflowClient(tracking_uri=self.uri)
        if cfg.uri and not _reachable(cfg.uri):
            self.disable("cannot connect")

    def disable(self, why: str) -> None:
        self.warn(f"tracking: MLflow at {self.uri}: {why}; the run goes on without tracking")
        self.client = None

    @_warn_once
    def start(self, name: str, config: dict) -> None:
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(self.experiment, self.artifact_location)
        self.experiment_id = exp_id
        self.parent = self.client.create_run(exp_id, run_name=name, tags={"nat_ray.kind": "pipeline"}).info.run_id
        self._params(self.parent, dict(flatten(config)))

    @_warn_once
    def stage(self, stage: StageManifest, folder: Path, status: str) -> None:
        if self.parent is None:
            return
        from mlflow.entities import Metric

        label = f"{stage.stage} {stage.variant}" if stage.variant else stage.stage
        tags = {"mlflow.parentRunId": self.parent, "nat_ray.stage": stage.stage, "nat_ray.status": status,
                "nat_ray.config_hash": stage.config_hash, "nat_ray.variant": stage.variant or "",
                "nat_ray.cpu": (stage.machine or {}).get("cpu") or ""}  # fmt: skip
        started = _ms(stage.started_at)
        run = self.client.create_run(self.experiment_id, start_time=started, run_name=label, tags=tags)
        run_id, now = run.info.run_id, int(time.time() * 1000)
        self._params(run_id, dict(flatten(stage.config or {})))
        values = {k: x for k, v in stage.counts.items() if (x := _number(v)) is not None}
        if stage.seconds is not None:
            values["stage_seconds"] = stage.seconds
        metrics = [Metric(k, v, now, 0) for k, v in values.items()]
        if stage.stage == "train":
            metrics += _training_metrics(folder, now)
        if stage.stage == "eval" and (m := read_record(folder / METRICS, EvalMetrics)) is not None:
            metrics += [Metric(k, v, now, 0) for k, v in eval_metric_values(m).items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes up to 1,000 metrics per batch
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        end = started + int(1000 * stage.seconds) if started and stage.seconds is not None else None
        self.client.set_terminated(run_id, "FINISHED", end_time=end)

    @_warn_once
    def artifacts(self, folder: Path, path: str) -> None:
        if self.parent is not None and folder.is_dir():
            self.client.log_artifacts(self.parent, str(folder), artifact_path=path)

    @_warn_once
    def end(self, ok: bool) -> None:
        if self.parent is not None:
            self.client.set_terminated(self.parent, "FINISHED" if ok else "FAILED")

    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes up to 100 params per batch
            self.client.log_batch(run_id, params=items[i : i + 100])


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_CHARS]


def _ms(stamp: str | None) -> int | None:
    if not stamp:
        return None
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _training_metrics(folder: Path, now: int) -> list:
    """Per logged optimizer step from rank 0's log, then the run's final figures."""
    from mlflow.entities import Metric

    out = []
    log = folder / TRAIN_LOG
    for _, row in read_records(log) if log.exists() else []:
        if "step" not in row:
            continue
        when = int(1000 * row["time"]) if isinstance(row.get("time"), int | float) else now
        out += [Metric(k, x, when, int(row["step"])) for k in STEP_METRICS if (x := _number(row.get(k))) is not None]
    record = read_record(folder / TRAIN_RECORD, TrainingRecord)
    if record is not None:
        final = record.model_dump()
        out += [Metric(k, x, now, record.step) for k in FINAL_METRICS if (x := _number(final.get(k))) is not None]
    return out


def _reachable(uri: str, timeout: float = 3.0) -> bool:
    """A TCP connection to an http(s) tracking server; other stores (sqlite, file, databricks) are tried on use."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


TRACKERS: dict[str, Callable[[TrackingConfig, Path], Tracker]] = {
    "none": lambda _cfg, _out: NoTracker(),
    "mlflow": MlflowTracker,
}


def make_tracker(cfg: TrackingConfig, out: Path) -> Tracker:
    return TRACKERS[cfg.kind](cfg, out)
