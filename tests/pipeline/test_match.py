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
