"""Power before the run: McNemar's power and the minimum detectable difference against hand-computed cases, and the
plan the pipeline prints."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from nat_ray.evaluation.power import mcnemar_power, min_detectable_difference
from tests.conftest import run_cli


def test_power_and_detectable_difference_match_the_normal_approximation() -> None:
    # n = 500 pairs, 30% discordant, a difference of 8 points: (0.08 sqrt(500) - 1.96 sqrt(0.3)) / sqrt(0.3 - 0.0064)
    z = (0.08 * math.sqrt(500) - NormalDist().inv_cdf(0.975) * math.sqrt(0.3)) / math.sqrt(0.3 - 0.0064)
    assert mcnemar_power(500, 0.3, 0.08) == pytest.approx(NormalDist().cdf(z)) == pytest.approx(0.907, abs=1e-3)
    mde = min_detectable_difference(500, 0.3)
    assert mde == pytest.approx(0.0685, abs=5e-4) and mcnemar_power(500, 0.3, mde) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_difference(100, 0.3) > min_detectable_difference(500, 0.3)  # type: ignore[operator]
    assert min_detectable_difference(4, 0.3) is None  # no difference a 4-question study could detect
    assert mcnemar_power(100, 0.3, 0.0) == 0.05 and mcnemar_power(100, 0.3, 0.3) == 1.0


def test_the_pipeline_plan_says_what_a_study_can_detect(data_dir, tmp_path) -> None:
    r = run_cli("pipeline", "--config", "configs/quickstart.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("plan: strategyqa: 100 questions x 1 sample(s) = 100 pairs per comparison;")
    assert "discordant share 0.45 (assumed); detectable at 80% power, alpha 0.05: 18.6 points" in lines[0]
    assert "plan:   nat - vanilla: the paper's +8 points has power 22%: cannot detect it" in r.stdout
    assert lines[-1] == "plan: 6 comparison(s); eval 400 episodes (no rate measured)"


def test_the_plan_pools_a_study_over_its_training_seeds(data_dir, tmp_path) -> None:
    r = run_cli("pipeline", "--config", "configs/study_strategyqa_paired.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "plan: strategyqa: 500 questions x 1 sample(s) = 500 pairs per comparison;" in r.stdout
    assert "plan:   nat-seed1 - vanilla-seed1: the paper's +8 points has power 76%: cannot detect it" in r.stdout
    pooled = "plan:   pooled over 2 training seeds: 1000 pairs; detectable: 5.9 points; the paper's +8 power 97%"
    assert pooled in r.stdout and "the paper's +3 power 29%" in r.stdout
