"""Skill beyond chance on yes/no sets: kappa by hand, the bias-only model at 0, the report's table and the warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.evaluation.metrics import dataset_metrics, eval_metrics, format_table
from nat_ray.evaluation.report import write_report
from nat_ray.evaluation.skill import yesno_skill
from nat_ray.records import EvalMetrics
from nat_ray.storage import write_record, write_trajectories
from nat_ray.types import FinishReason, Label, Trajectory


def _t(qid: str, truth: bool, answer: str | None, label: Label | None = None, sample: int = 0) -> Trajectory:
    right = answer is not None and (answer.lower() == "yes") == truth and answer.lower() in ("yes", "no")
    return Trajectory(
        id=qid,
        sample_index=sample,
        task="strategyqa",
        question="?",
        ground_truth="true" if truth else "false",
        prediction=answer,
        reward=None if label == Label.ERROR else right,
        label=label or (Label.POSITIVE if right else Label.NEGATIVE),
        finish_reason=FinishReason.FINISH,
    )


def _table(yt: int, yf: int, nt: int, nf: int) -> list[Trajectory]:
    """Episodes with the four counts (answer | truth), one question each."""
    cells = [(True, "yes", yt), (False, "yes", yf), (True, "no", nt), (False, "no", nf)]
    out, i = [], 0
    for truth, answer, k in cells:
        for _ in range(k):
            out.append(_t(f"q{i}", truth, answer))
            i += 1
    return out


def test_kappa_matches_the_hand_computed_value() -> None:
    # n 50, observed agreement 35/50 = 0.7; yes 30/50, true 25/50: expected 0.6*0.5 + 0.4*0.5 = 0.5 -> kappa 0.4
    s = yesno_skill(_table(20, 10, 5, 15))
    assert s.kappa == pytest.approx(0.4) and s.answered == 50 and s.yes_share == pytest.approx(0.6)
    assert s.majority_accuracy == pytest.approx(0.5)
    lo, hi = s.kappa_ci95
    assert 0.1 < lo < 0.4 < hi < 0.7 and not s.at_chance
    assert yesno_skill(_table(20, 10, 5, 15)).kappa_ci95 == s.kappa_ci95  # seeded
    perfect = yesno_skill(_table(10, 0, 0, 10))
    assert perfect.kappa == pytest.approx(1.0) and perfect.kappa_ci95 == pytest.approx((1.0, 1.0))


def test_answers_independent_of_the_truth_are_at_chance_whatever_their_accuracy() -> None:
    # 60 false / 40 true questions; one model always says no (60%), one says yes on half of each class (50%)
    always_no = yesno_skill(_table(0, 0, 40, 60))
    half = yesno_skill(_table(20, 30, 20, 30))
    assert always_no.kappa == 0.0 and always_no.yes_share == 0.0 and always_no.at_chance
    assert half.kappa == pytest.approx(0.0) and half.at_chance
    assert always_no.majority_accuracy == pytest.approx(0.6) == half.majority_accuracy
    assert dataset_metrics(_table(0, 0, 40, 60))["accuracy"] == pytest.approx(0.6)  # "better" by its bias alone


def test_unanswered_and_lost_episodes_are_left_out_and_samples_stay_with_their_question() -> None:
    trajs = [
        *_table(5, 0, 0, 5),
        _t("x1", True, None),
        _t("x2", False, "Thought: maybe"),
        _t("x3", True, "yes", Label.ERROR),
    ]
    s = yesno_skill(trajs)
    assert s.answered == 10 and s.kappa == pytest.approx(1.0)
    # majority over questions: 5 true + x1 (false answers x2 counted, x3 lost): 6 true of 12 questions graded
    assert s.majority_accuracy == pytest.approx(6 / 12)
    twice = yesno_skill([_t("a", True, "yes"), _t("a", True, "yes", sample=1), _t("b", False, "no")])
    assert twice.answered == 3 and twice.majority_accuracy == pytest.approx(0.5)  # question a counted once


def test_metrics_json_carries_the_skill_and_the_table_warns_at_chance() -> None:
    m = dataset_metrics(_table(0, 0, 40, 60))
    assert m["kappa"] == 0.0 and m["yes_share"] == 0.0 and m["answered"] == 100 and m["majority_accuracy"] == 0.6
    table = format_table(eval_metrics({"strategyqa": _table(0, 0, 40, 60)}, {}, "zero-shot"))
    assert "WARNING: strategyqa: the answers are independent of the truth (Cohen's kappa +0.000" in table
    assert "always answering the majority class scores 60.0%" in table
    skilled = format_table(eval_metrics({"strategyqa": _table(30, 5, 10, 55)}, {}, "zero-shot"))
    assert "independent of the truth" not in skilled
    gsm = Trajectory(id="1", task="gsm8k", question="?", ground_truth="1", prediction="1", reward=True,
                     label=Label.POSITIVE, finish_reason=FinishReason.FINISH)  # fmt: skip
    assert "kappa" not in dataset_metrics([gsm])


def test_the_report_has_a_skill_table_from_the_episodes(tmp_path: Path, monkeypatch) -> None:
    from nat_ray.evaluation import report_paired as report  # (where the episodes are read, once)

    reads: list[Path] = []
    read = report.read_trajectories
    monkeypatch.setattr(report, "read_trajectories", lambda folder: reads.append(folder) or read(folder))
    run = tmp_path / "run"
    models = {"vanilla": _table(0, 0, 40, 60), "nat": _table(30, 5, 10, 55)}
    for name, trajs in models.items():
        write_trajectories(trajs, run / "eval" / name / "strategyqa")
        # a metrics.json written before it carried kappa: the report computes the skill from the episodes
        metrics = eval_metrics({"strategyqa": trajs}, {"kind": "transformers"}, "zero-shot")
        for key in ("answered", "yes_share", "majority_accuracy", "kappa", "kappa_ci95"):
            metrics["datasets"]["strategyqa"].pop(key)
        write_record(run / "eval" / name / "metrics.json", EvalMetrics.new(**metrics))
    variants = [{"name": "vanilla", "mode": "vanilla", "neg_num": 0}, {"name": "nat", "mode": "nat", "neg_num": 8}]
    write_report(run, {"out": str(run)}, variants)
    readme = (run / "report/README.md").read_text()
    assert "## Skill beyond chance (yes/no sets)" in readme
    assert "| vanilla | strategyqa | 60.0 | 60.0 | 100 | 0.0 | +0.000 [+0.000, +0.000] | no |" in readme
    assert "| nat | strategyqa | 85.0 | 60.0 | 100 | 35.0 | +0.681 [" in readme and readme.count("| yes |") == 1
    # each eval folder's episodes read once, for the paired comparison and the skill table both
    assert sorted(reads) == sorted(run / "eval" / name / "strategyqa" for name in models)
