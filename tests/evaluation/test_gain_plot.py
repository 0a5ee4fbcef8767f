"""The gain-over-vanilla plot joins several runs' sweep points, each paired with its own vanilla."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.cli import main
from nat_ray.evaluation.gain_plot import gain_points, plot_gain_vs_negatives
from nat_ray.evaluation.math_skill import POOLED


def _variant(name: str, mode: str, neg: int, **extra: object) -> dict:
    return {"name": name, "mode": mode, "pos_num": 250, "neg_num": neg, "train_seed": 42, "template": None,
            "negative_source": "regenerated" if mode != "vanilla" else "imported", "round": 1, "twin": None,
            **extra}  # fmt: skip


def _row(a: str, b: str, diff: float, dataset: str = POOLED, outcome: str = "accuracy") -> dict:
    return {"a": a, "b": b, "dataset": dataset, "n_pairs": 1596, "diff": diff, "diff_ci95": [diff - 0.01, diff + 0.01],
            "outcome": outcome}  # fmt: skip


def _run(root: Path, name: str, variants: list[dict], rows: list[dict]) -> Path:
    report = root / name / "report"
    report.mkdir(parents=True)
    (report / "run.json").write_text(json.dumps({"variants": variants}))
    (report / "comparisons.json").write_text(json.dumps(rows))
    return root / name


def test_points_are_paired_gains_per_ratio_from_several_runs(tmp_path: Path) -> None:
    session = _run(
        tmp_path,
        "session",
        [_variant("vanilla", "vanilla", 0), _variant("nat-regenerated", "nat", 125),
         _variant("nat-regenerated-prefix-AB", "nat", 125, template="zero-shot-target-aware-prefix-AB"),
         _variant("vanilla-steps", "vanilla", 0, twin="vanilla"), _variant("dpo-regenerated", "dpo", 125)],
        [_row("nat-regenerated", "vanilla", 0.004), _row("nat-regenerated", "vanilla", 0.05, dataset="svamp"),
         _row("nat-regenerated", "vanilla", -0.02, outcome="loops"), _row("nat-regenerated", "vanilla-steps", 0.006),
         _row("nat-regenerated-prefix-AB", "vanilla", 0.009), _row("dpo-regenerated", "vanilla", -0.044)],
    )  # fmt: skip
    sweep = _run(
        tmp_path,
        "negatives",
        [_variant("vanilla", "vanilla", 0), _variant("nut-regenerated-neg250", "nut", 250),
         _variant("nat-regenerated-neg1000", "nat", 1000)],
        [_row("nut-regenerated-neg250", "vanilla", 0.01), _row("nat-regenerated-neg1000", "vanilla", 0.03)],
    )  # fmt: skip
    # only the default-template NAT / NUT over the plain vanilla, pooled, on accuracy
    assert [(p.variant, p.ratio, round(p.gain, 6)) for p in gain_points(session)] == [("nat-regenerated", 0.5, 0.4)]
    assert gain_points(tmp_path / "no-such-run") == []
    alone = tmp_path / "alone.png"
    assert plot_gain_vs_negatives([session], alone) == [] and not alone.exists()  # one ratio: no curve to draw
    path = tmp_path / "gain.png"
    points = plot_gain_vs_negatives([sweep, session], path)
    assert sorted((p.label, p.ratio) for p in points) == [("NAT (regenerated)", 0.5), ("NAT (regenerated)", 4.0),
                                                          ("NUT (regenerated)", 1.0)]  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_with_a_folder_without_a_report_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path), "--with", str(tmp_path / "other")]) == 2
    assert "--with " + str(tmp_path / "other") + ": not a pipeline run folder with a report" in capsys.readouterr().err
