"""The report a pipeline writes after each eval it makes, before its report stage: what a study stopped part-way has."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nat_ray.config import dump_config
from nat_ray.records import METRICS, STAGE_FILE, TABLE, RunLayout, StageManifest

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan, Say


def interim_report(plan: PipelinePlan, evaluated: StageManifest, started: str, say: Say) -> None:
    """After an eval this run made (``started``: when the run began): the report of every variant evaluated so far,
    so that a study stopped part-way (a session's share of a long one) has its table and comparisons. The report
    stage at the end replaces it: its record goes, so that stage is redone even where its inputs look unchanged."""
    if evaluated.started_at is None or evaluated.started_at < started:
        return
    from nat_ray.evaluation.report import write_report

    layout = RunLayout(plan.out)
    done = [v.__dict__ for v in plan.variants if (layout.eval_dir(v.name) / METRICS).exists()]
    (layout.report / STAGE_FILE).unlink(missing_ok=True)
    try:
        write_report(plan.out, dump_config(plan.cfg), done)
    except Exception as exc:  # a convenience: the study goes on, and the report stage at the end says what is wrong
        say(f"pipeline: the report of the variants evaluated so far failed ({type(exc).__name__}: {exc}); going on")
        return
    say(f"pipeline: report of the {len(done)} variant(s) evaluated so far: {layout.report / TABLE}")
