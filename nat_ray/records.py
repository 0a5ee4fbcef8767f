"""The run folder: where each output lives (:class:`RunLayout`) and one typed record per kind of output.

| record | file | written by |
|---|---|---|
| :class:`DatasetManifest` | ``<dataset>/_manifest.json``, ``<set>.jsonl.manifest.json`` | import, rollout, build |
| :class:`StageManifest` | ``<stage output>/_stage.json`` | the pipeline, around every stage |
| :class:`TrainingRecord` | ``<checkpoint>/nat_ray_train.json`` | train (rank 0, then the driver adds its summary) |
| :class:`EvalMetrics` | ``<eval>/metrics.json`` | eval |
| :class:`RunRecord` | ``report/run.json`` | report |
| :class:`IndexManifest` | ``<search index>/_manifest.json`` | ``nat-ray search build-index`` |

Every record carries ``schema_version`` and, where a config made it, that ``config`` and its ``config_hash``; each is
read and written only through ``nat_ray.storage.read_record`` / ``write_record`` (atomic, errors that name the file
and the field). A record written before records were typed (no ``schema_version``) reads as version 0, its hash
computed from its config. Records keep any further keys they hold (``extra="allow"``): a newer writer's field is
carried through, never dropped. This module is core (no Ray, no pipeline), so anything may import it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nat_ray.types import SCHEMA_VERSION, StrictModel

STAGE_FILE = "_stage.json"
RECORD_VERSION = 1  # of the typed records below (0: written before they were typed)


def config_hash(view: object, upstream: dict[str, str] | None = None) -> str:
    blob = json.dumps({"view": view, "upstream": upstream or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_hash(path: str | Path, chars: int = 16) -> str:
    """The file's sha256, hex, its first ``chars`` characters (16 in stage records; 64 where checksums are pinned)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:chars]


# ---------------------------------------------------------------- the records


class Record(BaseModel):
    """Base of the run folder's records: a schema version, the config that made the output and its hash."""

    model_config = ConfigDict(extra="allow")
    VERSION: ClassVar[int] = RECORD_VERSION

    schema_version: int = RECORD_VERSION
    config: dict[str, Any] | None = None
    config_hash: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema_version" not in data:
            data = {**data, "schema_version": 0}  # written before the records were typed
        return data

    @model_validator(mode="after")
    def _hash(self) -> Record:
        if self.config is not None and self.config_hash is None:
            self.config_hash = config_hash(self.config)
        return self

    @classmethod
    def new(cls, **fields: Any) -> Any:
        """A record of this kind as this version writes it."""
        return cls(schema_version=cls.VERSION, **fields)


class DatasetManifest(Record):
    """A dataset's manifest: trajectories (Parquet folder) or a training set (``.jsonl`` or Parquet).
    ``schema_version`` is the data's schema (:data:`nat_ray.types.SCHEMA_VERSION`)."""

    VERSION: ClassVar[int] = SCHEMA_VERSION
    kind: str  # trajectories | training-set
    counts: dict[str, int] = Field(default_factory=dict)
    identity: dict[str, Any] | None = None  # eval / rollout: what the episodes are (resume refuses another)
    complete: bool | None = None  # rollout / eval: every planned episode written


class TrainingRecord(Record):
    """How a checkpoint was trained: ``config`` is the run's config, ``train`` the train section the workers ran.
    Rank 0 writes the workers' figures; the driver then adds the summary (tokens, times) and the set's provenance."""

    train: dict[str, Any]
    step: int
    total_steps: int
    resumed_from_step: int = 0
    final_loss: float | None = None
    worker_seconds: float | None = None
    peak_rss_gb: float | None = None
    setup_peak_rss_gb: float | None = None
    dev_perplexity: float | None = None
    precision: str | None = None
    data: dict[str, Any] | None = None  # tokenisation counts (driver)
    training_set: dict[str, Any] | None = None  # the set's mode / template / counts (driver)
    tokens_seen: int | None = None
    wall_seconds: float | None = None
    train_seconds: float | None = None
    started_at: str | None = None


class EvalMetrics(Record):
    """An evaluation's results: per data set (accuracy, its interval, EM/F1, action errors, turns), the policy, the
    template, and how the run went."""

    policy: dict[str, Any] = Field(default_factory=dict)
    template: str | None = None
    datasets: dict[str, dict[str, Any]]
    math_average: float | None = None
    run: dict[str, Any] = Field(default_factory=dict)


class RunRecord(Record):
    """``report/run.json``: the run's config, variants, every stage's record, commit, versions, hardware, plots."""

    variants: list[dict[str, Any]] | None = None
    git_commit: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    stages: list[dict[str, Any]] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)


class IndexManifest(Record):
    """A local search index: its sources, passage counts, and the fingerprint of the data it was built from."""

    format: int
    sources: list[str]
    counts: dict[str, int] = Field(default_factory=dict)
    passages: int
    stemmer: bool = True
    data_dir: str | None = None
    fingerprint: str | None = None


class StageManifest(StrictModel):
    """What one pipeline stage made (``<output>/_stage.json``): the report, the summaries and resume read it.

    ``config_hash`` covers the stage's own config view (``config``) and the hashes of the stages it reads, so a
    change upstream changes every hash below it."""

    schema_version: int = RECORD_VERSION
    stage: str  # collect, regenerate, build, train, eval, heldout, report
    variant: str | None = None
    config_hash: str
    config: dict[str, Any] | None = None  # the stage's config view
    inputs: dict[str, str] = Field(default_factory=dict)  # path -> content hash (or the upstream stage's hash)
    outputs: list[str] = Field(default_factory=list)
    counts: dict[str, float | int | None] = Field(default_factory=dict)
    seconds: float | None = None
    started_at: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=dict)  # where the driver ran it (nat_ray.hardware.machine)
    complete: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return Record._legacy(data)


def read_stage(folder: Path) -> StageManifest | None:
    """The stage record of an output folder; None when absent or unreadable (the stage then runs again)."""
    from nat_ray.errors import InputError
    from nat_ray.storage import read_record  # storage imports this module's names: at call time

    try:
        return read_record(folder / STAGE_FILE, StageManifest)
    except InputError:
        return None


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("nat-ray", "ray", "torch", "transformers", "deepspeed"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


# ---------------------------------------------------------------- the run folder's layout (names nowhere else)

MANIFEST = "_manifest.json"  # a dataset folder's manifest
JSONL_MANIFEST_SUFFIX = ".manifest.json"  # beside a .jsonl file: <file>.manifest.json
TRAIN_RECORD = "nat_ray_train.json"  # in a checkpoint folder: how it was trained (steps, losses, precision, timing)
TRAIN_LOG = "metrics.jsonl"  # in a checkpoint folder: one line per logged optimizer step
METRICS = "metrics.json"  # in an eval folder
RUN_RECORD = "run.json"  # in the report folder: every stage's record
COMPARISONS = "comparisons.json"  # in the report folder: the paired comparisons (nat_ray.evaluation.compare)
POOLED_RUNS = "runs.json"  # in a `nat-ray pool-seeds` folder: the run folders it pooled
TABLE = "table.md"
REPORT_README = "README.md"
LOSS_PLOT = "loss.png"
ACCURACY_PLOT = "accuracy_vs_negatives.png"
PERPLEXITY_PLOT = "perplexity_vs_negatives.png"
ROUNDS_PLOT = "rounds.png"
CURVE_PLOT = "accuracy_vs_positives.png"  # study.positives: the learning curve
GAIN_PLOT = "gain_vs_negatives.png"  # NUT / NAT over vanilla per negatives-per-positive, beside the paper's


class RunLayout:
    """Where each output of a pipeline run lives, under its ``out`` folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    @property
    def trajectories(self) -> Path:
        return self.out / "trajectories"

    @property
    def regenerated(self) -> Path:
        """The trajectories a fine-tuned model rolled out (``study.negative_source: regenerated``)."""
        return self.out / "regenerated"

    @property
    def near_miss(self) -> Path:
        """Near misses of the collected correct trajectories (``study.negative_source: near-miss``)."""
        return self.out / "near-miss"

    @property
    def rounds(self) -> Path:
        return self.out / "rounds"

    def round_trajectories(self, variant: str) -> Path:
        """The trajectories a round's variant is built from: its previous round's model rolled out (study.rounds)."""
        return self.rounds / variant

    @property
    def sets(self) -> Path:
        return self.out / "sets"

    def set_dir(self, variant: str) -> Path:
        return self.sets / variant

    def set_file(self, variant: str) -> Path:
        return self.set_dir(variant) / "train.jsonl"

    @property
    def models(self) -> Path:
        return self.out / "models"

    def model(self, variant: str) -> Path:
        return self.models / variant

    @property
    def evals(self) -> Path:
        return self.out / "eval"

    def eval_dir(self, name: str) -> Path:
        return self.evals / name

    @property
    def heldout(self) -> Path:
        return self.out / "heldout"

    def heldout_dir(self, name: str) -> Path:
        """A model's perplexity on the held-out gold trajectories (``study.heldout``): its stage record's counts."""
        return self.heldout / name

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def tracking_store(self) -> Path:
        """``tracking.kind: mlflow`` with no uri: the local MLflow store (SQLite) inside the run folder."""
        return self.out / "mlflow.db"

    @property
    def tracking_artifacts(self) -> Path:
        return self.out / "mlartifacts"


def jsonl_manifest(path: Path) -> Path:
    """The manifest beside a ``.jsonl`` file."""
    return path.with_name(path.name + JSONL_MANIFEST_SUFFIX)


def dataset_manifest_path(path: str | Path) -> Path:
    """Where a dataset's manifest is: ``<folder>/_manifest.json``, or ``<file>.manifest.json`` beside a ``.jsonl``."""
    path = Path(path)
    return jsonl_manifest(path) if path.suffix == ".jsonl" else path / MANIFEST
