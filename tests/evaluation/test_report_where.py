"""The report's "Where it ran": each row's training and eval precision and its stages' CPUs, and a warning when the
rows were computed in different arithmetic (a run folder carried from a float32 CPU to a bf16 one)."""

from __future__ import annotations

from pathlib import Path

from nat_ray.evaluation.metrics import eval_metrics
from nat_ray.evaluation.report_where import mixed, where_rows, where_section
from nat_ray.records import STAGE_FILE, EvalMetrics, RunLayout, StageManifest, TrainingRecord
from nat_ray.storage import write_record
from nat_ray.types import FinishReason, Label, Trajectory

ICE_LAKE = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"


def _metrics(precision: str | None, cpu: str | None) -> EvalMetrics:
    t = Trajectory(id="0", task="gsm8k", question="?", ground_truth="1", reward=True, label=Label.POSITIVE,
                   finish_reason=FinishReason.FINISH)  # fmt: skip
    run = {"precision": precision} if precision else {}
    run |= {"machine": {"cpu": cpu}} if cpu else {}
    return EvalMetrics.new(**eval_metrics({"gsm8k": [t]}, {"kind": "openvino"}, "react"), run=run)


def _stage(folder: Path, stage: str, name: str, cpu: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": cpu, "cpus": 2, "bf16": []} if cpu else {}
    write_record(folder / STAGE_FILE, StageManifest(stage=stage, variant=name, config_hash="h", machine=machine,
                                                    complete=True))  # fmt: skip


def _run(tmp_path: Path, nut_eval: str) -> tuple[Path, dict[str, EvalMetrics]]:
    """vanilla trained and evaluated in float32 on an Ice Lake; nut trained in bf16 on an EPYC, its eval as given."""
    run, layout = tmp_path / "run", RunLayout(tmp_path / "run")
    rows = {"base": _metrics("float32 (policy.dtype: float32)", ICE_LAKE)}
    for name, trained, cpu, evaluated in (("vanilla", "float32", ICE_LAKE, "float32 (policy.dtype: auto -> …)"),
                                           ("nut", "bfloat16", "AMD EPYC", nut_eval)):  # fmt: skip
        _stage(layout.model(name), "train", name, cpu)
        write_record(layout.model(name) / "nat_ray_train.json",
                     TrainingRecord.new(train={}, step=3, total_steps=3, precision=trained))  # fmt: skip
        _stage(layout.eval_dir(name), "eval", name, cpu)
        rows[name] = _metrics(evaluated, None)
    rows["teacher"] = _metrics(None, None)
    return run, rows


def test_each_row_says_its_precisions_and_machines(tmp_path: Path) -> None:
    run, rows = _run(tmp_path, "bfloat16 (policy.dtype: auto -> OpenVINO's CPU default here)")
    table = {r["name"]: r for r in where_rows(run, rows)}
    assert table["base"] == {"name": "base", "trained": "-", "evaluated": "float32", "machines": ICE_LAKE}
    assert table["vanilla"] == {"name": "vanilla", "trained": "float32", "evaluated": "float32", "machines": ICE_LAKE}
    assert table["nut"] == {"name": "nut", "trained": "bfloat16", "evaluated": "bfloat16", "machines": "AMD EPYC"}
    assert table["teacher"]["evaluated"] == "-" and table["teacher"]["machines"] == "not recorded"
    assert mixed(list(table.values())) == [
        "training precision (bfloat16, float32)",
        "eval precision (bfloat16, float32)",
    ]
    text = "\n".join(where_section(run, rows))
    assert "**The rows were not computed in one arithmetic**" in text
    assert "| nut | bfloat16 | bfloat16 | AMD EPYC |" in text


def test_one_arithmetic_and_unrecorded_rows_raise_no_warning(tmp_path: Path) -> None:
    run, rows = _run(tmp_path, "float32 (policy.dtype: float32; inference precision and KV cache)")
    write_record(RunLayout(run).model("nut") / "nat_ray_train.json",
                 TrainingRecord.new(train={}, step=3, total_steps=3, precision="float32"))  # fmt: skip
    rows["old"] = _metrics(None, None)  # evaluated before precisions were recorded: left out of the comparison
    table = where_rows(run, rows)
    assert mixed(table) == [] and "not computed in one arithmetic" not in "\n".join(where_section(run, rows))
    assert {r["name"]: r["evaluated"] for r in table}["old"] == "not recorded"
