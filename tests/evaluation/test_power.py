"""Power before the run: McNemar's power and the minimum detectable difference against hand-computed cases, and the
plan the pipeline prints."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest

from nat_ray.evaluation.metrics import mcnemar_exact
from nat_ray.evaluation.power import mcnemar_power, min_detectable_difference, possible
from tests.conftest import run_cli


def _connor(n: int, psi: float, diff: float) -> float:
    z = NormalDist().inv_cdf(0.975)
    return NormalDist().cdf((diff * math.sqrt(n) - z * math.sqrt(psi)) / math.sqrt(psi - diff * diff))


def _brute_force_power(n: int, psi: float, diff: float) -> float:
    """Every outcome of n pairs (a wins b10, b wins b01, the rest agree), weighted by its trinomial probability,
    tested with the McNemar test the report runs: an independent count of the exact power."""
    p10, p01 = (psi + diff) / 2, (psi - diff) / 2
    total = 0.0
    for b10 in range(n + 1):
        for b01 in range(n - b10 + 1):
            if mcnemar_exact(b10, b01) <= 0.05:
                ways = math.comb(n, b10) * math.comb(n - b10, b01)
                total += ways * p10**b10 * p01**b01 * (1 - psi) ** (n - b10 - b01)
    return total


def test_power_is_the_exact_tests_where_the_normal_approximation_is_far_off() -> None:
    # n = 10, psi = delta = 0.1: every discordant pair goes a's way; the test rejects only with >= 6 of them
    assert mcnemar_power(10, 0.1, 0.1) == pytest.approx(1 - sum(math.comb(10, k) * 0.1**k * 0.9 ** (10 - k)
                                                             for k in range(6)), rel=1e-9)  # fmt: skip
    assert mcnemar_power(10, 0.1, 0.1) == pytest.approx(0.000147, abs=1e-6)
    assert _connor(10, 0.1, 0.1) == pytest.approx(0.156, abs=1e-3)  # what the approximation said
    for n, psi, diff in [(30, 0.4, 0.2), (25, 0.3, 0.0), (40, 0.2, 0.15), (12, 0.5, 0.5)]:
        assert mcnemar_power(n, psi, diff) == pytest.approx(_brute_force_power(n, psi, diff), rel=1e-9, abs=1e-12)


def test_a_difference_beyond_the_discordant_share_is_impossible_not_certain() -> None:
    assert not possible(0.1, 0.12) and possible(0.1, 0.1)
    assert mcnemar_power(10, 0.1, 0.12) == 0.0 and mcnemar_power(10_000, 0.1, 0.12) == 0.0
    assert mcnemar_power(100, 0.3, 0.0) <= 0.05  # the test's size: never more than alpha


def test_power_and_detectable_difference_at_large_n_agree_with_the_normal_approximation() -> None:
    assert mcnemar_power(500, 0.3, 0.08) == pytest.approx(_connor(500, 0.3, 0.08), abs=0.015)
    assert mcnemar_power(5000, 0.3, 0.03) == pytest.approx(_connor(5000, 0.3, 0.03), abs=0.005)
    mde = min_detectable_difference(500, 0.3)
    assert mde == pytest.approx(0.0701, abs=5e-4) and mcnemar_power(500, 0.3, mde) == pytest.approx(0.8, abs=1e-4)
    assert min_detectable_difference(100, 0.3) > min_detectable_difference(500, 0.3)  # type: ignore[operator]
    assert min_detectable_difference(4, 0.3) is None  # no difference a 4-question study could detect


def test_the_pipeline_plan_says_what_a_study_can_detect(data_dir, tmp_path) -> None:
    r = run_cli("pipeline", "--config", "configs/quickstart_strategyqa.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("plan: strategyqa: 100 questions x 1 sample(s) = 100 pairs per comparison;")
    assert "discordant share 0.45 (assumed); detectable at 80% power, alpha 0.05: 19.2 points" in lines[0]
    assert "plan:   nat - vanilla: the paper's +8 points has power 18%: cannot detect it" in r.stdout
    assert lines[-1] == "plan: 6 comparison(s); eval 400 episodes (no rate measured)"


def test_the_plan_pools_a_study_over_its_training_seeds(data_dir, tmp_path) -> None:
    r = run_cli("pipeline", "--config", "configs/study_strategyqa_paired.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "plan: strategyqa: 500 questions x 1 sample(s) = 500 pairs per comparison;" in r.stdout
    # one line for both seeds' nat - vanilla: the same n, share and effect give one power
    line = "plan:   nat-seed1 - vanilla-seed1 (and 1 more nat - vanilla): the paper's +8 points has power 74%: cannot"
    assert line in r.stdout
    pooled = "plan:   pooled over 2 training seeds: 1,000 pairs, discordant share 0.45; detectable: 6.0 points; the "
    assert pooled + "paper's +8 power 96%, the paper's +3 power 28%" in r.stdout


def test_the_plan_says_an_effect_beyond_the_measured_discordant_share_is_impossible(data_dir, tmp_path) -> None:
    report = tmp_path / "run" / "report"
    report.mkdir(parents=True)  # a previous report in which the variants disagreed on 5 of 100 questions
    (report / "comparisons.json").write_text('[{"dataset": "strategyqa", "n_pairs": 100, "a_only": 3, "b_only": 2}]')
    r = run_cli("pipeline", "--config", "configs/quickstart_strategyqa.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "discordant share 0.05 (measured on strategyqa by this run folder's last report)" in r.stdout
    assert "plan:   nat - vanilla: the paper's +8 points is impossible at a discordant share of 0.05" in r.stdout
    assert "plan:   nat - nut: the paper's +3 points has power" in r.stdout


def test_the_main_jobs_plan_is_500_math_questions_per_model(data_dir, tmp_path) -> None:
    r = run_cli("pipeline", "--config", "configs/quickstart.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "plan: multiarith: 250 questions x 1 sample(s) = 250 pairs per comparison;" in r.stdout
    assert "plan: svamp: 250 questions x 1 sample(s) = 250 pairs per comparison;" in r.stdout
    assert "plan: 6 comparison(s); eval 2,000 episodes" in r.stdout  # base, vanilla, NUT, NAT x 500


def test_math_plans_test_the_papers_math_gains_per_set_and_pooled_over_the_sets(data_dir, tmp_path) -> None:
    """A finished run's report (--plan-from) gives each data set its own discordant share: the math sets' variants,
    all at ~10%, disagree far less than StrategyQA's, and the study is planned with that."""
    done = tmp_path / "done" / "report"
    done.mkdir(parents=True)
    rows = [{"dataset": "multiarith", "n_pairs": 250, "a_only": 10, "b_only": 15},
            {"dataset": "svamp", "n_pairs": 250, "a_only": 20, "b_only": 20}]  # fmt: skip
    (done / "comparisons.json").write_text(json.dumps(rows))
    args = ["pipeline", "--config", "configs/quickstart.yaml", f"out={tmp_path / 'run'}"]
    r = run_cli(*args, "--plan-from", str(tmp_path / "done"))
    assert r.returncode == 0, r.stderr
    assert f"discordant share 0.10 (measured on multiarith by {tmp_path / 'done'}'s last report)" in r.stdout
    assert f"discordant share 0.16 (measured on svamp by {tmp_path / 'done'}'s last report)" in r.stdout
    power = mcnemar_power(250, 0.10, 0.09)
    line = f"plan:   nat-regenerated - vanilla: the paper's +9 points has power {power:.0%}: can detect it"
    assert power >= 0.8 and line in r.stdout
    assert "plan:   nat-regenerated - nut-regenerated: the paper's +3 points has power" in r.stdout
    # pooled over the two sets: 500 pairs at the pairs-weighted share (0.10 + 0.16) / 2
    pooled = "plan: pooled over the 2 data sets: 500 pairs, discordant share 0.13; detectable: "
    assert pooled in r.stdout and f"the paper's +3 power {mcnemar_power(500, 0.13, 0.03):.0%}" in r.stdout
    missing = run_cli(*args, "--plan-from", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "--plan-from" in missing.stderr and "report" in missing.stderr


def test_a_pooled_seeds_report_sizes_the_papers_gains_with_the_seed_random(data_dir, tmp_path) -> None:
    """`--plan-from` a `nat-ray pool-seeds` folder: its comparisons' seed variances say how many training seeds the
    paper's gains need, the seed variance taken as the mean over the folder's pooled comparisons."""
    from nat_ray.evaluation.crossed import Components, crossed_power, seeds_needed

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    comps = [{"seed": 0.0, "question": 0.001, "residual": 0.15}, {"seed": 0.0008, "question": 0.001, "residual": 0.15}]
    rows = [{"a": a, "b": b, "dataset": "all math (pooled)", "n_pairs": 1000, "a_only": 60, "b_only": 60,
             "seeds": 2, "crossed": {"components": c}}
            for (a, b), c in zip([("nat-regenerated", "nut-regenerated"), ("nut-regenerated", "vanilla")], comps,
                                 strict=True)]  # fmt: skip
    (seeds / "comparisons.json").write_text(json.dumps(rows))
    (seeds / "runs.json").write_text("[]")
    r = run_cli("pipeline", "--config", "configs/quickstart.yaml", f"out={tmp_path / 'run'}", "--plan-from", str(seeds))
    assert r.returncode == 0, r.stderr
    comp = Components(seed=0.0004, question=0.001, residual=0.15)  # the mean seed variance, this pair's others
    powers = ", ".join(f"{crossed_power(comp, k, 500, 0.03):.0%} at {k}" for k in (2, 3, 5))
    line = (f"plan:   nat - nut on all math (pooled), seeds random (seed sd 2.0 points: the mean seed variance of "
            f"the 2 pooled comparisons of {seeds}'s report; nat-regenerated - nut-regenerated's own 0.0): the paper's "
            f"+3 has power {powers} seeds; 80% needs {seeds_needed(comp, 500, 0.03)} seeds")  # fmt: skip
    assert line in r.stdout
    assert r.stdout.strip().splitlines()[-1].endswith("(no rate measured)")  # its runs evaluated nothing


def test_the_math_study_is_planned_over_the_four_sets_in_full(data_dir, tmp_path) -> None:
    r = run_cli("pipeline", "--config", "configs/study_math.yaml", "--plan", f"out={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    for name, n in (("gsm8k", 1319), ("asdiv", 2023), ("svamp", 1000), ("multiarith", 596)):
        assert f"plan: {name}: {n} questions x 1 sample(s) = {n} pairs per comparison;" in r.stdout
    assert "plan: pooled over the 4 data sets: 4,938 pairs" in r.stdout
    assert "plan: pooled over the 4 data sets and 3 training seeds: 14,814 pairs" in r.stdout
