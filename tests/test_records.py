"""The run folder's typed records: written with a schema version, the config and its hash; read back typed; a run
made before the records were typed (tests/fixtures/run_before_typed_records, the CI pipeline's records as commit
cda627c wrote them) still reads, and a report is made from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.evaluation.report import write_report
from nat_ray.models import training_info
from nat_ray.records import (
    METRICS,
    RECORD_VERSION,
    RUN_RECORD,
    TRAIN_RECORD,
    DatasetManifest,
    EvalMetrics,
    IndexManifest,
    RunLayout,
    RunRecord,
    TrainingRecord,
    config_hash,
    read_stage,
)
from nat_ray.storage import dataset_manifest, read_record, write_record
from nat_ray.tools.search.local import read_index_manifest
from nat_ray.types import SCHEMA_VERSION

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_RUN = FIXTURES / "run_before_typed_records"


def test_a_run_made_before_typed_records_reads_through_them() -> None:
    layout = RunLayout(OLD_RUN)
    trajectories = dataset_manifest(layout.trajectories)
    assert trajectories is not None and trajectories.kind == "trajectories"
    assert trajectories.schema_version == SCHEMA_VERSION and trajectories.counts["trajectories"] == 2333
    assert trajectories.config_hash == config_hash(trajectories.config)  # computed: the old file has none
    nat_set = dataset_manifest(layout.set_file("nat"))
    assert nat_set is not None and nat_set.kind == "training-set" and nat_set.counts["negatives"] == 8
    evals = dataset_manifest(layout.eval_dir("nat") / "strategyqa")
    assert evals is not None and evals.complete and evals.identity and evals.identity["dataset"] == "strategyqa"

    record = read_record(layout.model("nat") / TRAIN_RECORD, TrainingRecord)
    assert record is not None and record.schema_version == 0 and record.step == record.total_steps == 2
    assert record.train["max_steps"] == 2 and record.config and record.config_hash == config_hash(record.config)
    assert record.training_set and record.training_set["mode"] == "nat"
    assert training_info(layout.model("nat")) == record.training_set

    metrics = read_record(layout.eval_dir("nat") / METRICS, EvalMetrics)
    assert metrics is not None and metrics.schema_version == 0 and metrics.template == "zero-shot-target-aware"
    assert metrics.datasets["strategyqa"]["n"] + metrics.datasets["strategyqa"]["errors"] == 4
    teacher = read_record(layout.eval_dir("teacher") / METRICS, EvalMetrics)
    assert teacher is not None and teacher.datasets["strategyqa"]["n"] == 2333

    run = read_record(layout.report / RUN_RECORD, RunRecord)
    assert run is not None and run.schema_version == 0 and {s["stage"] for s in run.stages} >= {"train", "eval"}
    assert run.versions["ray"] and run.config and run.config["study"]["modes"] == ["vanilla", "nat"]

    stage = read_stage(layout.model("nat"))
    assert stage is not None and stage.complete and stage.schema_version == 0 and stage.config is None

    index = read_index_manifest(FIXTURES / "index_before_typed_records")
    assert index.schema_version == 0 and index.passages == 15067 and index.stemmer


def test_a_report_is_made_from_the_old_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    summary = write_report(run)
    assert summary["rows"] == 4
    table = (run / "report/table.md").read_text()
    assert "| nat |" in table and "45.9 [43.9, 47.9] (n=2333)" in table
    readme = (run / "report/README.md").read_text()  # its eval folders hold no episodes: said, not a crash
    assert "eval/nat/strategyqa: no Parquet files in this folder" in readme.split("## Skill beyond chance")[1]
    record = read_record(run / "report" / RUN_RECORD, RunRecord)
    assert record is not None and record.schema_version == RECORD_VERSION  # rewritten by this version
    assert record.config and record.config_hash == config_hash(record.config)  # the old run's config kept
    assert [v["name"] for v in record.variants or []] == ["vanilla", "nat"]


def test_records_are_written_with_their_version_config_and_hash(tmp_path: Path) -> None:
    config = {"train": {"lr": 1e-4}}
    write_record(tmp_path / "t.json", TrainingRecord.new(config=config, train=config["train"], step=1, total_steps=1))
    raw = json.loads((tmp_path / "t.json").read_text())
    assert raw["schema_version"] == RECORD_VERSION and raw["config_hash"] == config_hash(config)
    back = read_record(tmp_path / "t.json", TrainingRecord)
    assert back is not None and back.config == config and back.step == 1
    manifest = DatasetManifest.new(kind="trajectories", config={"k": 1}, counts={"trajectories": 3}, note="kept")
    write_record(tmp_path / "m.json", manifest)
    again = read_record(tmp_path / "m.json", DatasetManifest)
    assert again == manifest and again.schema_version == SCHEMA_VERSION
    assert again.model_extra == {"note": "kept"}  # a field this version does not know is carried, not dropped
    assert read_record(tmp_path / "absent.json", EvalMetrics) is None
    with pytest.raises(InputError, match=r"absent\.json: no such file"):
        read_record(tmp_path / "absent.json", EvalMetrics, missing_ok=False)


def test_a_malformed_record_names_its_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"schema_version": 1, "datasets": {"gsm8k": 3}}))
    with pytest.raises(InputError, match=r"metrics.json: not a EvalMetrics record: field datasets\.gsm8k"):
        read_record(path, EvalMetrics)
    (tmp_path / "index").mkdir()
    (tmp_path / "index/_manifest.json").write_text(json.dumps({"format": 1, "sources": ["x"]}))
    with pytest.raises(InputError, match="not a IndexManifest record: field passages"):
        read_index_manifest(tmp_path / "index")
    assert IndexManifest.VERSION == RECORD_VERSION
