"""Eval metrics on hand-built trajectories: every formula, the Wilson bounds, errors left out of denominators."""

from __future__ import annotations

import itertools
import math

import pytest

from nat_ray.evaluation.metrics import dataset_metrics, eval_metrics, format_table, mcnemar_exact, wilson_interval
from nat_ray.types import FinishReason, Label, Trajectory, Turn

_IDS = itertools.count()


def traj(task="gsm8k", reward=True, turns=2, errors=0, label=None, reason=FinishReason.FINISH, em=None, f1=None,
         qid=None, sample=0, gt="1"):  # fmt: skip
    body = []
    for _ in range(turns):
        body += [Turn(role="assistant", content="Action: x[1]", loss=True), Turn(role="user", content="Observation: 1")]
    if label is None:
        label = Label.POSITIVE if reward else Label.NEGATIVE
    graded = label != Label.ERROR
    return Trajectory(
        id=qid if qid is not None else f"q{next(_IDS)}",
        sample_index=sample,
        task=task,
        question="?",
        ground_truth=gt,
        turns=body,
        reward=reward if graded else None,
        em=em,
        f1=f1,
        label=label,
        finish_reason=reason,
        action_errors=errors,
    )


def test_wilson_interval_matches_the_closed_form() -> None:
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)  # not the degenerate [0, 0] of the normal interval
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and lo == pytest.approx(0.8389, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(1070, 2333)
    assert lo < 1070 / 2333 < hi and hi - lo < 0.05


def test_every_formula_and_errors_left_out() -> None:
    trajs = [
        traj(reward=True, turns=2),
        traj(reward=False, turns=3),
        traj(reward=False, turns=0, errors=1, reason=FinishReason.MALFORMED_ACTION),
        traj(reward=False, turns=6, reason=FinishReason.MAX_TURNS),
        traj(label=Label.ERROR, turns=1, reason=FinishReason.ERROR),
        traj(label=Label.ERROR, turns=0, reason=FinishReason.ERROR),
    ]
    m = dataset_metrics(trajs)
    assert m["n"] == 4 and m["errors"] == 2
    assert m["accuracy"] == 0.25
    assert m["accuracy_ci95"] == list(wilson_interval(1, 4))
    # replies: 2 + 3 + (0 turns + 1 malformed) + 6 = 12, of which 1 invalid
    assert m["action_error_rate"] == pytest.approx(1 / 12)
    assert m["avg_turns"] == pytest.approx(12 / 4)
    assert m["finish_reasons"] == {"error": 2, "finish": 2, "malformed_action": 1, "max_turns": 1}
    assert "em" not in m and "f1" not in m


def test_qa_sets_report_em_and_f1_with_unanswered_as_zero() -> None:
    trajs = [
        traj(task="hotpotqa", reward=True, em=True, f1=1.0),
        traj(task="hotpotqa", reward=False, em=False, f1=0.5),
        traj(task="hotpotqa", reward=False, em=None, f1=None, reason=FinishReason.MAX_TURNS),
        traj(task="hotpotqa", label=Label.ERROR, reason=FinishReason.ERROR),
    ]
    m = dataset_metrics(trajs)
    assert m["n"] == 3 and m["em"] == pytest.approx(1 / 3) and m["f1"] == pytest.approx(0.5)


def test_math_average_and_the_whole_shape() -> None:
    by = {
        "gsm8k": [traj(reward=True), traj(reward=False)],
        "svamp": [traj(task="svamp", reward=True)],
        "strategyqa": [traj(task="strategyqa", reward=False, gt="true")],
    }
    out = eval_metrics(by, {"kind": "scripted"}, "zero-shot")
    assert set(out) == {"policy", "template", "datasets", "math_average"}
    assert out["math_average"] == pytest.approx((0.5 + 1.0) / 2)  # StrategyQA is not a math set
    keys = {"n", "questions", "accuracy", "accuracy_ci95", "action_error_rate", "avg_turns", "errors", "finish_reasons"}
    skill = {"answered", "yes_share", "majority_accuracy", "kappa", "kappa_ci95"}  # yes/no sets only
    math = {"copy_floor", "copy_floor_rule", "calc_calls", "calc_valid", "grounded_operands",
            "answer_is_last_observation", "loop_rate", "calls_per_episode", "multi_call_share",
            "accuracy_multi_call", "accuracy_single_call"}  # math sets only  # fmt: skip
    assert all(set(m) == keys | (skill if d == "strategyqa" else math) for d, m in out["datasets"].items())
    assert "math_average" not in eval_metrics({"strategyqa": by["strategyqa"]}, {}, "t")


def test_an_all_error_set_has_no_accuracy_and_the_table_says_so_loudly() -> None:
    out = eval_metrics({"gsm8k": [traj(label=Label.ERROR, reason=FinishReason.ERROR)]}, {}, "zero-shot")
    m = out["datasets"]["gsm8k"]
    assert m["n"] == 0 and m["accuracy"] is None and m["errors"] == 1 and "math_average" not in out
    table = format_table(out)
    assert "WARNING: 1 episode(s) lost to infrastructure errors" in table
    assert not math.isnan(m["accuracy_ci95"][0])


def test_exact_mcnemar_is_the_two_sided_binomial_test_on_discordant_pairs() -> None:
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(1, 9) == mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(10, 20) == pytest.approx(0.0987, abs=1e-4)  # scipy.stats.binomtest(10, 30).pvalue


def test_samples_of_a_question_are_averaged_first_and_the_interval_is_over_questions() -> None:
    # q1: 2 of 2 samples right; q2: 1 of 3 (one more lost to an error); q3: 0 of 1
    trajs = [traj(qid="q1", sample=0), traj(qid="q1", sample=1),
             traj(qid="q2", sample=0), traj(qid="q2", sample=1, reward=False), traj(qid="q2", sample=2, reward=False),
             traj(qid="q2", sample=3, label=Label.ERROR, reason=FinishReason.ERROR),
             traj(qid="q3", sample=0, reward=False)]  # fmt: skip
    m = dataset_metrics(trajs)
    assert m["n"] == 6 and m["questions"] == 3 and m["errors"] == 1
    assert m["accuracy"] == pytest.approx((1 + 1 / 3 + 0) / 3)  # not 3 / 6: each question counts once
    assert m["accuracy_ci95"] == pytest.approx(list(wilson_interval(4 / 3, 3)))
