"""A difference with the training seeds random as well as the questions (``crossed.py``): against the one-sample t
tests it reduces to when one factor does not vary, its size under a true null in simulation, and its power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nat_ray.evaluation.compare import seed_matrix
from nat_ray.evaluation.crossed import Components, crossed_difference, crossed_power, seeds_needed
from nat_ray.types import FinishReason, Label, Trajectory


def test_without_a_seed_effect_it_is_the_t_test_over_the_questions() -> None:
    # every seed gives each question the same difference: the seeds add nothing, the questions are the sample
    cols = np.array([1, 0, 0, 1, -1, 1, 0, 1, 1, 0], dtype=float)
    c = crossed_difference(np.tile(cols, (3, 1)))
    t = stats.ttest_1samp(cols, 0.0)
    assert c.per_seed == pytest.approx((0.4, 0.4, 0.4)) and c.components.seed == 0.0
    assert c.df == pytest.approx(9) and c.p == pytest.approx(t.pvalue)
    assert c.ci95 == pytest.approx(tuple(t.confidence_interval(0.95)))


def test_without_a_question_effect_it_is_the_t_test_over_the_seeds() -> None:
    # each seed moves every question alike: the seeds are the sample, k − 1 degrees of freedom
    rows = np.array([0.05, -0.01, 0.02])
    c = crossed_difference(np.repeat(rows[:, None], 50, axis=1))
    t = stats.ttest_1samp(rows, 0.0)
    assert c.components.question == 0.0 and c.components.seed == pytest.approx(rows.var(ddof=1))
    assert c.df == pytest.approx(2) and c.p == pytest.approx(t.pvalue)
    assert c.ci95 == pytest.approx(tuple(t.confidence_interval(0.95)))


def _simulated(rng: np.random.Generator, seed_sd: float, k: int = 3, n: int = 1596) -> np.ndarray:
    """k seeds' two models on n questions at ~9% accuracy (the math study's), equal on average, a seed moving
    their difference by ``seed_sd``."""
    u = rng.normal(0.0, seed_sd, k)[:, None]
    return (rng.random((k, n)) < 0.09 + u / 2).astype(float) - (rng.random((k, n)) < 0.09 - u / 2)


def test_its_size_holds_where_the_questions_alone_reject_a_true_null_far_too_often() -> None:
    rng = np.random.default_rng(0)
    crossed = naive = 0
    for _ in range(300):
        y = _simulated(rng, 0.03)
        crossed += crossed_difference(y).p < 0.05
        naive += stats.ttest_1samp(y.mean(axis=0), 0.0).pvalue < 0.05  # seeds fixed: the report's pooled rows
    assert crossed / 300 <= 0.09  # nominal 5%, 300 draws
    assert naive / 300 >= 0.3


def test_power_grows_with_seeds_and_the_seeds_needed_are_where_it_reaches_80() -> None:
    comp = Components(seed=0.02**2, question=0.001, residual=0.15)
    powers = [crossed_power(comp, k, 1596, 0.03) for k in (2, 3, 5, 10)]
    assert powers == sorted(powers) and powers[0] < 0.2 and powers[-1] > 0.8
    need = seeds_needed(comp, 1596, 0.03)
    assert need is not None and crossed_power(comp, need, 1596, 0.03) >= 0.8 > crossed_power(comp, need - 1, 1596, 0.03)
    assert seeds_needed(comp, 1596, 0.03, most=3) is None
    assert crossed_power(comp, 3, 1596, 0.0) <= 0.06  # no effect: about its level


def _t(qid: int, sample: int, right: bool) -> Trajectory:
    return Trajectory(id=str(qid), sample_index=sample, task="svamp", question="q?", ground_truth="1",
                      prediction="1" if right else "2", reward=right,
                      label=Label.POSITIVE if right else Label.NEGATIVE, finish_reason=FinishReason.FINISH)  # fmt: skip


def test_the_seed_matrix_averages_samples_and_keeps_the_questions_every_seed_shares() -> None:
    a1 = [_t(0, 0, True), _t(0, 1, False), _t(1, 0, True), _t(2, 0, True)]
    b1 = [_t(0, 0, False), _t(0, 1, False), _t(1, 0, True), _t(2, 0, False)]
    a2 = [_t(0, 0, False), _t(1, 0, True)]  # question 2 not evaluated under seed 2
    b2 = [_t(0, 0, True), _t(1, 0, False)]
    y = seed_matrix([a1, a2], [b1, b2])
    assert y.tolist() == [[0.5, 0.0], [-1.0, 1.0]]
