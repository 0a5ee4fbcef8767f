"""Paired comparisons against hand-computed cases, and in a report made from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.evaluation.compare import compare, holm, implied_pairs, paired_bootstrap, verdict, with_holm
from nat_ray.evaluation.metrics import eval_metrics
from nat_ray.evaluation.report import write_report
from nat_ray.records import EvalMetrics
from nat_ray.storage import write_record, write_trajectories
from nat_ray.types import FinishReason, Label, Trajectory, Turn


def _t(qid: str, right: bool, sample: int = 0, error: bool = False) -> Trajectory:
    label = Label.ERROR if error else Label.POSITIVE if right else Label.NEGATIVE
    return Trajectory(id=qid, task="strategyqa", question="?", ground_truth="true", reward=right and not error,
                      label=label, sample_index=sample, finish_reason=FinishReason.FINISH)  # fmt: skip


def test_mcnemar_and_difference_match_a_hand_computed_case() -> None:
    a = [_t(str(i), i < 7) for i in range(10)]  # right on 0-6
    b = [_t(str(i), i in (0, 1, 2, 9)) for i in range(10)]  # right on 0-2 and 9
    c = compare("nat", a, "nut", b, "strategyqa")
    assert (c.n_pairs, c.a_only, c.b_only, c.left_out) == (10, 4, 1, 0)
    assert c.diff == pytest.approx(0.3)
    assert c.p_mcnemar == pytest.approx(2 * (1 + 5) / 2**5)  # two-sided binomial, 1 of 5 discordant pairs
    assert c.diff_ci95[0] < 0.3 < c.diff_ci95[1]
    assert verdict(c).startswith("nat − nut: +30.0 points [") and verdict(c).endswith("not separated at this n")


def test_the_bootstrap_interval_agrees_with_the_normal_one_on_a_large_case() -> None:
    diffs = [(1.0, 0.0)] * 30 + [(0.0, 1.0)] * 10 + [(1.0, 1.0)] * 160  # mean 0.1, population variance 0.19
    lo, hi = paired_bootstrap(diffs)
    se = (0.19 / 200) ** 0.5
    assert lo == pytest.approx(0.1 - 1.96 * se, abs=0.01) and hi == pytest.approx(0.1 + 1.96 * se, abs=0.01)
    assert paired_bootstrap(diffs) == (lo, hi)  # seeded: the same interval every time


def test_samples_are_averaged_per_question_and_errors_left_out() -> None:
    a = [_t("q1", True, 0), _t("q1", True, 1), _t("q2", False, 0), _t("q2", True, 1), _t("q3", True, 0)]
    b = [_t("q1", False, 0), _t("q1", True, 1), _t("q2", False, 0), _t("q2", False, 1, error=True)]
    c = compare("a", a, "b", b, "strategyqa")
    # matched: q1/0, q1/1, q2/0; q2/1 (an error in b) and q3 (not in b) are left out
    assert (c.n_pairs, c.n_questions, c.left_out, c.a_only, c.b_only) == (3, 2, 2, 1, 0)
    assert c.diff == pytest.approx(((1.0 - 0.5) + (0.0 - 0.0)) / 2)
    with pytest.raises(InputError, match="a vs b on strategyqa: no question evaluated by both"):
        compare("a", [_t("q1", True)], "b", [_t("q9", True)], "strategyqa")


def test_holm_and_the_pairs_a_study_implies() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    variants = [
        {"name": "vanilla", "mode": "vanilla", "neg_num": 0, "pos_num": 8, "train_seed": 0},
        {"name": "nut", "mode": "nut", "neg_num": 8, "pos_num": 8, "train_seed": 0},
        {"name": "nat", "mode": "nat", "neg_num": 8, "pos_num": 8, "train_seed": 0},
    ]
    pairs = implied_pairs(variants, ["base", "vanilla", "nut", "nat", "teacher"])
    assert pairs == [("nut", "vanilla"), ("nat", "vanilla"), ("nat", "nut"), ("vanilla", "base"), ("nut", "base"),
                     ("nat", "base")]  # fmt: skip
    assert implied_pairs(variants, ["nat", "nut"]) == [("nat", "nut")]


def test_near_misses_are_paired_with_own_failures_and_a_hint_template_with_the_default() -> None:
    def v(name: str, mode: str, source: str = "regenerated", template: str | None = None) -> dict:
        neg = 0 if mode == "vanilla" else 8
        return {"name": name, "mode": mode, "neg_num": neg, "pos_num": 8, "train_seed": 0, "negative_source": source,
                "template": template}  # fmt: skip

    ab = "zero-shot-target-aware-prefix-AB"
    variants = [v("vanilla", "vanilla", "imported"), v("nut-near-miss", "nut", "near-miss"),
                v("nat-near-miss", "nat", "near-miss"), v("nat-near-miss-prefix-AB", "nat", "near-miss", ab),
                v("nut-regenerated", "nut"), v("nat-regenerated", "nat"),
                v("nat-regenerated-prefix-AB", "nat", template=ab)]  # fmt: skip
    pairs = implied_pairs(variants, [x["name"] for x in variants])
    new = [p for p in pairs if p[1] != "vanilla" and p[0][:3] == p[1][:3]]  # (NAT vs NUT aside)
    assert new == [
        ("nut-near-miss", "nut-regenerated"),
        ("nat-near-miss", "nat-regenerated"),
        ("nat-near-miss-prefix-AB", "nat-regenerated-prefix-AB"),
        ("nat-near-miss-prefix-AB", "nat-near-miss"),
        ("nat-regenerated-prefix-AB", "nat-regenerated"),
    ]
    assert ("nat-near-miss", "nut-near-miss") in pairs and ("nat-regenerated-prefix-AB", "nut-regenerated") in pairs
    # no twin evaluated: no pair
    assert implied_pairs(variants, ["nat-near-miss", "nat-near-miss-prefix-AB"]) == [
        ("nat-near-miss-prefix-AB", "nat-near-miss")
    ]


def test_dpo_and_kto_are_paired_with_vanilla_and_nat_of_their_seed() -> None:
    variants = [{"name": m, "mode": m, "neg_num": 0 if m == "vanilla" else 8, "pos_num": 8, "train_seed": 0}
                for m in ("vanilla", "nat", "dpo", "kto")]  # fmt: skip
    assert implied_pairs(variants, ["vanilla", "nat", "dpo", "kto"]) == [
        ("nat", "vanilla"), ("dpo", "vanilla"), ("kto", "vanilla"), ("nat", "dpo"), ("nat", "kto")]  # fmt: skip


def test_a_learning_curve_pairs_each_size_with_the_next_smaller_and_its_own_vanilla() -> None:
    variants = [{"name": f"{m}-pos{p}", "mode": m, "neg_num": 0 if m == "vanilla" else 8, "pos_num": p,
                 "train_seed": 0} for m in ("vanilla", "nat") for p in (250, 1000, "all")]  # fmt: skip
    pairs = implied_pairs(variants, [v["name"] for v in variants])
    assert pairs == [
        ("nat-pos250", "vanilla-pos250"), ("nat-pos1000", "vanilla-pos1000"), ("nat-posall", "vanilla-posall"),
        ("vanilla-pos1000", "vanilla-pos250"), ("vanilla-posall", "vanilla-pos1000"),
        ("nat-pos1000", "nat-pos250"), ("nat-posall", "nat-pos1000"),
    ]  # fmt: skip


def test_a_later_round_is_paired_with_its_round_before_and_the_vanilla_model_of_its_round() -> None:
    def v(name: str, mode: str, k: int, previous: str | None) -> dict:
        return {"name": name, "mode": mode, "neg_num": 0, "pos_num": 8, "train_seed": 1, "round": k,
                "previous": previous}  # fmt: skip

    variants = [v("vanilla", "vanilla", 1, None), v("nat", "nat", 1, None), v("vanilla-r2", "vanilla", 2, "vanilla"),
                v("nat-r2", "nat", 2, "nat")]  # fmt: skip
    assert implied_pairs(variants, [x["name"] for x in variants]) == [
        ("nat", "vanilla"), ("nat-r2", "vanilla-r2"), ("vanilla-r2", "vanilla"), ("nat-r2", "nat")]  # fmt: skip
    # vanilla not iterated: a later NAT round against round 1's vanilla
    assert implied_pairs(variants[:2] + variants[3:], ["vanilla", "nat", "nat-r2"]) == [
        ("nat", "vanilla"), ("nat-r2", "vanilla"), ("nat-r2", "nat")]  # fmt: skip


def test_a_compute_matched_control_is_paired_with_its_variant_and_the_variants_it_matches() -> None:
    variants = [
        {"name": f"{m}-seed{s}", "mode": m, "neg_num": 0 if m == "vanilla" else 8, "pos_num": 8, "train_seed": s}
        for m in ("vanilla", "nut", "nat")
        for s in (1, 2)
    ]
    variants += [{**variants[s], "name": f"vanilla-steps-seed{s + 1}", "match": "steps",
                  "twin": f"vanilla-seed{s + 1}"} for s in (0, 1)]  # fmt: skip
    pairs = implied_pairs(variants, [v["name"] for v in variants])
    seed1 = [p for p in pairs if p[0].endswith("seed1")]
    assert seed1 == [("nut-seed1", "vanilla-seed1"), ("nat-seed1", "vanilla-seed1"), ("nat-seed1", "nut-seed1"),
                     ("vanilla-steps-seed1", "vanilla-seed1"), ("nut-seed1", "vanilla-steps-seed1"),
                     ("nat-seed1", "vanilla-steps-seed1")]  # fmt: skip
    assert len(pairs) == 12 and all(p[0][-1] == p[1][-1] for p in pairs)  # never across seeds


def test_the_report_writes_comparisons_json_and_its_table(tmp_path: Path) -> None:
    run = tmp_path / "run"
    right = {"base": range(0), "vanilla": range(4), "nat": range(9)}
    for name, r in right.items():
        trajs = [_t(str(i), i in r) for i in range(10)]
        write_trajectories(trajs, run / "eval" / name / "strategyqa")
        metrics = eval_metrics({"strategyqa": trajs}, {"kind": "transformers"}, "zero-shot")
        write_record(run / "eval" / name / "metrics.json", EvalMetrics.new(**metrics))
    variants = [{"name": "vanilla", "mode": "vanilla", "neg_num": 0}, {"name": "nat", "mode": "nat", "neg_num": 8}]
    write_report(run, {"out": str(run)}, variants)
    rows = json.loads((run / "report/comparisons.json").read_text())
    keys = {"a", "b", "dataset", "n_pairs", "a_only", "b_only", "diff", "diff_ci95", "p_mcnemar", "p_holm"}
    assert all(keys <= set(r) for r in rows)
    got = {(r["a"], r["b"]): r for r in rows}
    assert set(got) == {("nat", "vanilla"), ("vanilla", "base"), ("nat", "base")}
    nat = got[("nat", "base")]
    assert (nat["a_only"], nat["b_only"], nat["diff"]) == (9, 0, pytest.approx(0.9))
    assert nat["p_mcnemar"] == pytest.approx(2 / 2**9) and nat["p_holm"] == pytest.approx(3 * 2 / 2**9)
    readme = (run / "report/README.md").read_text()
    assert "## Paired comparisons" in readme and "| nat − base | strategyqa | 10 | 9 | 0 | +90.0 [" in readme
    assert "- nat − base: +90.0 points [" in readme and "— separated" in readme
    assert with_holm([]) == []


def test_a_seeds_study_is_compared_per_seed_and_pooled(tmp_path: Path) -> None:
    run = tmp_path / "run"
    right = {"vanilla-seed1": range(3), "vanilla-seed2": range(4), "nat-seed1": range(6), "nat-seed2": range(7)}
    for name, r in right.items():
        trajs = [_t(str(i), i in r) for i in range(10)]
        write_trajectories(trajs, run / "eval" / name / "strategyqa")
        metrics = eval_metrics({"strategyqa": trajs}, {"kind": "transformers"}, "zero-shot")
        write_record(run / "eval" / name / "metrics.json", EvalMetrics.new(**metrics))
    variants = [{"name": f"{m}-seed{s}", "mode": m, "neg_num": 0 if m == "vanilla" else 8, "train_seed": s}
                for m in ("vanilla", "nat") for s in (1, 2)]  # fmt: skip
    write_report(run, {"out": str(run)}, variants)
    rows = json.loads((run / "report/comparisons.json").read_text())
    got = {(r["a"], r["b"], r["seeds"]): r for r in rows}
    assert set(got) == {("nat-seed1", "vanilla-seed1", 1), ("nat-seed2", "vanilla-seed2", 1), ("nat", "vanilla", 2)}
    pooled = got[("nat", "vanilla", 2)]
    assert pooled["n_pairs"] == 20 and pooled["n_questions"] == 10  # the question stays the resampled unit
    assert (pooled["a_only"], pooled["b_only"]) == (3 + 3, 0) and pooled["diff"] == pytest.approx(0.3)
    assert pooled["p_holm"] == pytest.approx(min(1.0, 3 * 2 / 2**6))  # the smallest of three p-values, x 3
    assert "| nat − vanilla (2 seeds pooled) | strategyqa | 20 |" in (run / "report/README.md").read_text()


def test_a_math_study_is_also_compared_over_its_sets_pooled(tmp_path: Path) -> None:
    """The paper's math verdict is over its sets together: each pair gets a row over the math sets it shares, each
    question a pair once (ids that repeat across sets stay apart), Holm-adjusted with the rest."""
    run = tmp_path / "run"
    right = {"vanilla": {"multiarith": range(2), "svamp": range(1)}, "nat": {"multiarith": range(5), "svamp": range(4)}}
    loop = [Turn(role="assistant", content="Thought: add\nAction: calculate[1+2]", loss=True)] * 2
    for name, sets in right.items():
        by_set = {}
        for d, r in sets.items():
            by_set[d] = [
                t.model_copy(
                    update={"task": d, "ground_truth": "3", "turns": loop if name == "vanilla" and i >= 7 else []}
                )
                for i, t in enumerate(_t(str(i), i in r) for i in range(10))
            ]  # vanilla loops on its last 3 questions of each set, NAT never
            write_trajectories(by_set[d], run / "eval" / name / d)
        metrics = eval_metrics(by_set, {"kind": "transformers"}, "zero-shot")
        write_record(run / "eval" / name / "metrics.json", EvalMetrics.new(**metrics))
    variants = [{"name": "vanilla", "mode": "vanilla", "neg_num": 0}, {"name": "nat", "mode": "nat", "neg_num": 8}]
    write_report(run, {"out": str(run)}, variants)
    everything = json.loads((run / "report/comparisons.json").read_text())
    rows = {(r["a"], r["dataset"]): r for r in everything if r["outcome"] == "accuracy"}
    assert set(rows) == {("nat", "multiarith"), ("nat", "svamp"), ("nat", "all math (pooled)")}
    # the loops, paired on the same episodes, pooled over the sets, Holm apart from the accuracy
    (loops,) = [r for r in everything if r["outcome"] == "loops"]
    assert (loops["dataset"], loops["n_pairs"], loops["a_only"], loops["b_only"]) == ("all math (pooled)", 20, 0, 6)
    assert loops["diff"] == pytest.approx(-0.3) and loops["p_holm"] == loops["p_mcnemar"] == pytest.approx(2 / 2**6)
    assert "### Loops, paired" in (run / "report/README.md").read_text()
    pooled = rows[("nat", "all math (pooled)")]
    assert (pooled["n_pairs"], pooled["n_questions"], pooled["a_only"], pooled["b_only"]) == (20, 20, 6, 0)
    assert pooled["diff"] == pytest.approx(0.3) and pooled["p_mcnemar"] == pytest.approx(2 / 2**6)
    assert pooled["p_holm"] == pytest.approx(3 * 2 / 2**6)  # the smallest of three p-values
    assert "| nat − vanilla | all math (pooled) | 20 | 6 | 0 | +30.0 [" in (run / "report/README.md").read_text()
