"""``study.match``: compute-matched training, to separate "trained on negatives" from "trained longer".

More negatives make a larger set, and with a fixed number of epochs a larger set gets more optimizer steps: every
trend over negatives is then also a trend over training. ``epochs`` keeps that (the paper's setting); ``steps``
gives every variant the same number of optimizer steps (the largest any variant would take; smaller sets cycle over
more epochs), ``tokens`` the same number of trained tokens (steps scaled by each set's tokens per step; equal to
within one step). The learning-rate schedule spans each variant's own steps.

A variant's steps per epoch are counted as the workers count them: ``(examples // workers) // (micro-batch x
accumulation)``. ``study.match``'s target is taken over the variants built from the collected trajectories, before
any trains (a variant whose negatives are regenerated later is matched to the same target); ``study.controls``' over
every first-round variant, once all their sets are built (the regenerated ones too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from nat_ray.config import TrainConfig

Match = Literal["epochs", "steps", "tokens"]


@dataclass(frozen=True)
class Budget:
    """A training set as the trainer will see it: examples and tokens (after tokenising, truncation, drops)."""

    examples: int
    tokens: int

    def steps_per_epoch(self, tc: TrainConfig) -> int:
        return (self.examples // tc.num_workers) // (tc.micro_batch_size * tc.accumulation)

    def tokens_per_step(self, tc: TrainConfig) -> float:
        spe = self.steps_per_epoch(tc)
        return self.tokens / spe if spe else 0.0

    def natural_steps(self, tc: TrainConfig) -> int:
        """The steps ``train.epochs`` (capped by ``train.max_steps``) gives this set."""
        steps = math.ceil(self.steps_per_epoch(tc) * tc.epochs)
        return min(steps, tc.max_steps) if tc.max_steps else steps


def target(match: Match, budgets: list[Budget], tc: TrainConfig) -> float | None:
    """What every variant gets: the most steps, or the most tokens, any of them would train; None for ``epochs``."""
    if match == "epochs" or not budgets:
        return None
    if match == "steps":
        return float(max(b.natural_steps(tc) for b in budgets))
    return max(b.natural_steps(tc) * b.tokens_per_step(tc) for b in budgets)


def matched(match: Match, goal: float | None, budget: Budget, tc: TrainConfig) -> TrainConfig:
    """The train section that gives this set the target: ``max_steps`` set, and enough epochs to reach it."""
    spe = budget.steps_per_epoch(tc)
    if goal is None or spe == 0:
        return tc
    steps = int(goal) if match == "steps" else max(1, round(goal / budget.tokens_per_step(tc)))
    return tc.model_copy(update={"max_steps": steps, "epochs": steps / spe + 1})
