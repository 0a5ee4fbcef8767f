"""The pipeline's rollout stages: the collecting rollout (``collect.kind: rollout``), the regenerated negatives
(``study.negative_source: regenerated``) and each later round's trajectories (``study.rounds``) — a model of this run
rolling out the train questions with the ``rollout`` section's settings, as one resumable stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nat_ray.config import PolicyConfig, RolloutConfig, RunConfig
from nat_ray.episode import seed_identity
from nat_ray.pipeline.variants import Variant
from nat_ray.records import RunLayout, StageManifest

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan

Say = Callable[[str], None]


def rollout_view(
    plan: PipelinePlan, folder: Path, rollout: RolloutConfig, policy: PolicyConfig
) -> tuple[dict, RunConfig]:
    rollout = rollout.model_copy(update={"out": str(folder)})
    view_cfg = plan.cfg.model_copy(update={"rollout": rollout, "policy": policy})
    view = {"rollout": rollout.model_dump(mode="json", exclude={"out"}), "policy": policy.model_dump(mode="json")}
    view["tools"] = plan.cfg.tools.model_dump(mode="json")
    view |= seed_identity(plan.cfg.seed, rollout.temperatures)
    return view, view_cfg


def rollout_stage(
    plan: PipelinePlan,
    stage: str,
    folder: Path,
    rollout: RolloutConfig,
    policy: PolicyConfig,
    upstream: dict[str, str],
    say: Say,
    variant: str | None = None,
) -> StageManifest:
    from nat_ray.rollout.driver import run_rollout

    view, view_cfg = rollout_view(plan, folder, rollout, policy)
    body = lambda: run_rollout(view_cfg)["counts"]  # noqa: E731
    return plan.stage(folder, stage, variant, view, upstream, body, say)


def round_rollout(plan: PipelinePlan, v: Variant, prev: str, upstream: str, say: Say) -> StageManifest:
    """Round k's trajectories: round k-1's model rolls out the train questions (the ``rollout`` section) with the
    template it was trained with; every episode graded and labelled once (a killed round resumes its rollout)."""
    from nat_ray.models import training_info

    model = RunLayout(plan.out).model(prev)
    rollout = plan.cfg.rollout_section
    rollout = rollout.model_copy(update={"template": (training_info(model) or {}).get("template") or rollout.template})
    policy = plan.engine(str(model), source=f"round{v.round}:{prev}")
    folder = RunLayout(plan.out).round_trajectories(v.name)
    return rollout_stage(plan, "rollout", folder, rollout, policy, {"train": upstream}, say, v.name)


def regenerate(plan: PipelinePlan, source: str, upstream: str, say: Say) -> StageManifest:
    """The ``source`` variant's checkpoint rolled out on the train questions with the template it was trained with:
    its negatives replace the collected ones in the regenerated variants (the paper's negative-quality study)."""
    from nat_ray.models import training_info

    model = RunLayout(plan.out).model(source)
    rollout = plan.cfg.rollout_section
    template = (training_info(model) or {}).get("template") or rollout.template
    rollout = rollout.model_copy(update={"template": template})
    policy = plan.engine(str(model), source=f"regenerated:{source}")
    return rollout_stage(plan, "regenerate", RunLayout(plan.out).regenerated, rollout, policy, {"train": upstream}, say)
