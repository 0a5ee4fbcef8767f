"""study.match: the budgets that give every variant the same optimizer steps or the same trained tokens."""

from __future__ import annotations

import pytest

from nat_ray.config import TrainConfig
from nat_ray.pipeline.match import Budget, matched, target

TC = TrainConfig(model="m", global_batch_size=8, micro_batch_size=2, num_workers=2, epochs=2.0)  # accumulation 2


def test_steps_gives_every_variant_the_most_steps_any_would_take() -> None:
    small, large = Budget(examples=40, tokens=4000), Budget(examples=100, tokens=20000)
    assert (small.steps_per_epoch(TC), large.steps_per_epoch(TC)) == (5, 12)  # (n // 2 workers) // (2 x 2)
    goal = target("steps", [small, large], TC)
    assert goal == 24  # the large set's 2 epochs
    for b in (small, large):
        tc = matched("steps", goal, b, TC)
        assert tc.max_steps == 24 and tc.epochs * b.steps_per_epoch(TC) > 24  # the small set cycles ~5 epochs
    assert target("epochs", [small, large], TC) is None and matched("epochs", None, small, TC) == TC
    capped = TC.model_copy(update={"max_steps": 10})
    assert target("steps", [small, large], capped) == 10


def test_tokens_gives_every_variant_the_same_trained_tokens_within_a_step() -> None:
    short, long = Budget(examples=100, tokens=10_000), Budget(examples=100, tokens=30_000)  # 12 steps an epoch each
    goal = target("tokens", [short, long], TC)
    assert goal == pytest.approx(24 * 30_000 / 12)
    trained = {}
    for name, b in (("short", short), ("long", long)):
        tc = matched("tokens", goal, b, TC)
        trained[name] = tc.max_steps * b.tokens_per_step(TC)
        assert abs(trained[name] - goal) <= b.tokens_per_step(TC)
    assert matched("tokens", goal, short, TC).max_steps == 72 and matched("tokens", goal, long, TC).max_steps == 24


def _ci_plan(tmp_path, smollm2, overrides: list[str]):
    from pathlib import Path

    from nat_ray.config import load_config
    from nat_ray.pipeline.driver import validate
    from tests.training.test_train_ray import tiny_llama_folder

    repo = Path(__file__).resolve().parents[2]
    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    base = [f"out={tmp_path / 'run'}", f"train.model={model}", "train.max_steps=null", "train.epochs=1"]
    return validate(load_config(repo / "configs/ci_pipeline.yaml", base + overrides))


def test_controls_keep_the_twin_of_the_variant_that_trains_less(tmp_path, smollm2) -> None:
    """The pipeline's budget step on the shipped CI config (import and build are plain Python, no Ray): vanilla's 8
    examples take 2 steps, NAT's 16 take 4; the `steps` control of vanilla trains 4, NAT's equals NAT (left out)."""
    from nat_ray.pipeline.driver import _collect, _collect_identity
    from nat_ray.pipeline.sets import build_stage, compute_budgets, decide_controls, set_upstream, train_section

    plan = _ci_plan(tmp_path, smollm2, ["study.controls=[steps]"])
    assert [v.name for v in plan.variants] == ["vanilla", "nat", "vanilla-steps", "nat-steps"]
    said: list[str] = []
    collected = _collect(plan, _collect_identity(plan), said.append)
    variants, built, _, goals = compute_budgets(plan, collected, said.append)
    assert [v.name for v in variants] == ["vanilla", "nat"] and built == {} and goals == {}  # controls come last
    for v in variants:  # the driver trains each after building its set; the controls are decided after them
        build_stage(plan, v, set_upstream(v, collected, None), said.append)
    controls, sizes, goals = decide_controls(plan, said.append)
    assert [v.name for v in controls] == ["vanilla-steps"]
    assert goals == {"steps": 4.0} and (sizes["vanilla"].examples, sizes["nat"].examples) == (8, 16)
    assert any("nat-steps left out" in line for line in said)
    steps = {v.name: train_section(plan, v, sizes, goals).max_steps for v in [*variants, *controls]}
    assert steps == {"vanilla": None, "nat": None, "vanilla-steps": 4}  # None: train.epochs decides (2 and 4 steps)


def test_a_steps_control_trains_as_long_as_the_variant_on_regenerated_negatives(tmp_path, smollm2) -> None:
    """NAT on the vanilla model's own failures is built only once vanilla has trained and rolled out: the control of
    vanilla is decided after it, so it matches NAT's steps (decided before, it saw vanilla's set alone and was left
    out). The regenerated trajectories here are the collected ones, copied where the rollout writes them."""
    import shutil

    from nat_ray.pipeline.driver import _collect, _collect_identity
    from nat_ray.pipeline.sets import build_stage, decide_controls, set_upstream, train_section
    from nat_ray.records import RunLayout

    overrides = ["study.controls=[steps]", "study.negative_source=[regenerated]", "study.regenerate_from=vanilla"]
    overrides += ["rollout={task: strategyqa, limit: 3, temperatures: [0.7]}"]
    plan = _ci_plan(tmp_path, smollm2, overrides)
    assert [v.name for v in plan.variants] == ["vanilla", "vanilla-steps", "nat-regenerated"]
    said: list[str] = []
    collected = _collect(plan, _collect_identity(plan), said.append)
    shutil.copytree(RunLayout(plan.out).trajectories, RunLayout(plan.out).regenerated)
    for v in (v for v in plan.variants if not v.control):
        build_stage(plan, v, set_upstream(v, collected, None) | {"regenerate": "r"}, said.append)
    controls, sizes, goals = decide_controls(plan, said.append)
    assert sizes["nat-regenerated"].examples == 16 and goals == {"steps": 4.0}
    assert [v.name for v in controls] == ["vanilla-steps"] and train_section(
        plan, controls[0], sizes, goals
    ).max_steps == 4
