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


def test_controls_keep_the_twin_of_the_variant_that_trains_less(tmp_path, smollm2) -> None:
    """The pipeline's budget step on the shipped CI config (import and build are plain Python, no Ray): vanilla's 8
    examples take 2 steps, NAT's 16 take 4; the `steps` control of vanilla trains 4, NAT's equals NAT (left out)."""
    from pathlib import Path

    from nat_ray.config import load_config
    from nat_ray.pipeline.driver import _collect, _collect_identity, validate
    from nat_ray.pipeline.sets import compute_budgets, train_section
    from tests.training.test_train_ray import tiny_llama_folder

    repo = Path(__file__).resolve().parents[2]
    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    overrides = [f"out={tmp_path / 'run'}", f"train.model={model}", "train.max_steps=null", "train.epochs=1"]
    overrides += ["study.controls=[steps]"]
    plan = validate(load_config(repo / "configs/ci_pipeline.yaml", overrides))
    assert [v.name for v in plan.variants] == ["vanilla", "nat", "vanilla-steps", "nat-steps"]
    said: list[str] = []
    collected = _collect(plan, _collect_identity(plan), said.append)
    variants, built, sizes, goals = compute_budgets(plan, collected, said.append)
    assert [v.name for v in variants] == ["vanilla", "nat", "vanilla-steps"] and set(built) == {"vanilla", "nat"}
    assert goals == {"steps": 4.0} and (sizes["vanilla"].examples, sizes["nat"].examples) == (8, 16)
    assert any("nat-steps left out" in line for line in said)
    steps = {v.name: train_section(plan, v, sizes, goals).max_steps for v in variants}
    assert steps == {"vanilla": None, "nat": None, "vanilla-steps": 4}  # None: train.epochs decides (2 and 4 steps)
