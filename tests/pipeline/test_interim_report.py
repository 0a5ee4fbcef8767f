"""The report written after each eval a run makes (``nat_ray.pipeline.interim_report``): only after a fresh
eval, and never the end of a study when it fails. The whole path, with real stages, is in test_pipeline_ray.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.pipeline import driver
from nat_ray.pipeline.interim_report import interim_report
from nat_ray.records import StageManifest

REPO = Path(__file__).resolve().parents[2]


def test_only_a_fresh_eval_reports_and_a_failed_report_is_said_not_raised(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = driver.validate(load_config(REPO / "configs/ci_pipeline.yaml", [f"out={tmp_path / 'run'}"]))
    calls: list[list[str]] = []

    def broken(_run: Path, _config: dict, variants: list[dict]) -> dict:
        calls.append([v["name"] for v in variants])
        raise ValueError("a plot failed")

    monkeypatch.setattr("nat_ray.evaluation.report.write_report", broken)
    said: list[str] = []
    eval_stage = StageManifest(stage="eval", variant="nat", config_hash="x", started_at="2026-12-06T10:00:00Z")
    interim_report(plan, eval_stage, "2026-12-06T11:00:00Z", said.append)  # skipped: made before this run
    assert calls == [] and said == []
    interim_report(plan, eval_stage, "2026-12-06T09:59:59Z", said.append)
    assert calls == [[]]  # (no eval in this run folder yet)
    assert said == [
        "pipeline: the report of the variants evaluated so far failed (ValueError: a plot failed); going on"
    ]
