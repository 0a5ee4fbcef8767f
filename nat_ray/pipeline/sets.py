"""The training sets of a pipeline run and what each variant trains for: the build stage of each variant, and compute
matching (:mod:`nat_ray.pipeline.match`): ``study.match`` decided from the built sets before the first variant trains,
``study.controls`` once every variant's set is built; ``study.train_by_mode`` applied to each variant's ``train``
section."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from nat_ray.config import TrainConfig
from nat_ray.config_sections import BuildStageConfig
from nat_ray.errors import InputError, first_validation_error
from nat_ray.pipeline.match import Budget, matched, target
from nat_ray.pipeline.variants import Variant
from nat_ray.records import RunLayout, StageManifest
from nat_ray.tasks import prompts_file

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan

Say = Callable[[str], None]


def compute_budgets(
    plan: PipelinePlan, collected: StageManifest, say: Say, near_miss: dict[str, str] | None = None
) -> tuple[list[Variant], dict[str, StageManifest], dict[str, Budget], dict[str, float | None]]:
    """``study.match``, decided before the first variant trains: every variant gets the target. Returns the variants
    to run (the controls not among them: :func:`decide_controls`), the sets built on the way, each set's budget, and
    the match's target (steps or tokens). ``near_miss``: the near-miss stage's hash, upstream of the variants built
    from it."""
    study = plan.cfg.study
    match = study.match if study else "epochs"
    variants = [v for v in plan.variants if not v.control]
    if match == "epochs":
        return variants, {}, {}, {}
    built = {v.name: build_stage(plan, v, set_upstream(v, collected, near_miss), say)
             for v in variants if not v.regenerated and v.round == 1}  # fmt: skip
    budgets = {v.name: set_budget(plan, v) for v in variants if v.name in built}
    goals: dict[str, float | None] = {match: target(match, list(budgets.values()), plan.train)}  # type: ignore[arg-type]
    say(f"pipeline: study.match {match}: the target is {goals[match]:,.0f} {match}")
    return variants, built, budgets, goals


def decide_controls(plan: PipelinePlan, say: Say) -> tuple[list[Variant], dict[str, Budget], dict[str, float | None]]:
    """``study.controls``, decided once every first-round variant's set is built (those whose negatives the run
    regenerated too: a control trains as long as the longest of them, NAT on the vanilla model's own failures
    included). Returns the controls kept (those whose variant trains less than the target; a control's set is its
    twin's), the budgets of the sets and each control's target."""
    controls = [v for v in plan.variants if v.control]
    if not controls:
        return [], {}, {}
    budgets = {v.name: set_budget(plan, v) for v in plan.variants if not v.control and v.round == 1}
    goals: dict[str, float | None] = {}
    for m in sorted({c.match for c in controls}):
        goals[m] = target(m, list(budgets.values()), plan.train)  # type: ignore[arg-type]
        say(f"pipeline: study.controls {m}: the target is {goals[m]:,.0f} {m}")
    kept, dropped = [], []
    for c in controls:  # one whose variant already trains the target would be that variant trained twice
        b = budgets[c.twin or ""]
        steps = matched(c.match, goals[c.match], b, plan.train).max_steps  # type: ignore[arg-type]
        (kept if steps is not None and steps != b.natural_steps(plan.train) else dropped).append(c)
    if dropped:
        names = ", ".join(c.name for c in dropped)
        say(f"pipeline: study.controls: {names} left out (their variant already trains the target)")
    return kept, budgets, goals


def set_upstream(v: Variant, collected: StageManifest, near_miss: dict[str, str] | None) -> dict[str, str]:
    """The stages a variant's set is built from, before any training: the collected trajectories, and the near-miss
    stage (``near_miss``: its hash) for a variant whose negatives are near misses."""
    return {"collect": collected.config_hash} | ((near_miss or {}) if v.near_miss else {})


def train_section(
    plan: PipelinePlan, v: Variant, budgets: dict[str, Budget], goals: dict[str, float | None]
) -> TrainConfig:
    """The variant's ``train`` section: the config's (with ``study.train_by_mode`` for its mode), matched to its
    target when the study matches compute."""
    study = plan.cfg.study
    train = mode_train(plan.train, study.train_by_mode if study else None, v.mode)
    m = v.match if v.control else (study.match if study else "epochs")
    if goals.get(m) is None:
        return train
    budget = budgets.get(v.twin or v.name) or set_budget(plan, v)
    return matched(m, goals[m], budget, train)  # type: ignore[arg-type]


def mode_train(train: TrainConfig, by_mode: dict[str, dict] | None, mode: str) -> TrainConfig:
    """``train`` with the settings ``study.train_by_mode`` gives ``mode`` (validated: an unknown key is an error)."""
    if not by_mode or mode not in by_mode:
        return train
    try:
        return TrainConfig.model_validate(train.model_dump() | by_mode[mode])
    except ValidationError as exc:
        where, message = first_validation_error(exc)
        raise InputError(f"study.train_by_mode.{mode}.{where}: {message}") from None


def build_stage(plan: PipelinePlan, v: Variant, upstream: dict[str, str], say: Say) -> StageManifest:
    from nat_ray.reformat import ALL, BuildConfig, build

    layout = RunLayout(plan.out)
    folder = layout.set_dir(v.name)
    sources = {"regenerated": layout.regenerated, "near-miss": layout.near_miss}
    negatives_from = str(sources[v.negative_source]) if v.negative_source in sources else None
    counts = {"pos_num": v.pos_num, "neg_num": v.neg_num}
    # later rounds keep every success and failure of their own rollouts: the paper's selection of "all"
    first_selection = plan.cfg.build.selection if plan.cfg.build is not None else "paper"
    selection = first_selection if v.round == 1 else "paper"
    section = BuildStageConfig(
        mode=v.mode,
        template=v.template,
        seed=v.build_seed,
        selection=selection,
        **counts,  # type: ignore[arg-type]
    )
    prompts = str(prompts_file(plan.task, plan.cfg.data_dir))
    source = layout.round_trajectories(v.name) if v.round > 1 else layout.trajectories
    config = BuildConfig.from_section(section, str(source), prompts, str(layout.set_file(v.name)), negatives_from)
    if v.round > 1 and plan.cfg.study is not None and plan.cfg.study.round_mix:
        first = _first_round(plan, v)  # the collected trajectories, selected as round 1 selected them
        mix = {"pos_num": first.pos_num, "neg_num": first.neg_num}
        mix = {k: ALL if n == "all" else int(n) for k, n in mix.items()}
        update = {"mix_from": str(layout.trajectories), "mix_selection": first_selection}
        config = config.model_copy(update=update | {"mix_pos_num": mix["pos_num"], "mix_neg_num": mix["neg_num"]})
    exclude = {"out", "trajectories", "prompts", "negatives_from", "mix_from", "mix_pos_num", "mix_neg_num",
               "mix_selection"}  # fmt: skip
    if config.selection == "paper":  # (sets of the paper's selection keep the hash they had before `selection`)
        exclude.add("selection")
    view = config.model_dump(mode="json", exclude=exclude)
    if v.negative_source != "imported":  # (imported variants keep the hash they had before negative sources existed)
        view["negative_source"] = v.negative_source
    if v.round > 1:
        view |= {"round": v.round, "mix": config.mix_from is not None}
        if config.mix_from is not None and config.mix_selection != "paper":
            view["mix_selection"] = config.mix_selection
    return plan.stage(folder, "build", v.name, view, upstream, lambda: build(config).counts, say)


def _first_round(plan: PipelinePlan, v: Variant) -> Variant:
    by_name = {w.name: w for w in plan.variants}
    while v.previous is not None:
        v = by_name[v.previous]
    return v


def set_budget(plan: PipelinePlan, variant: Variant) -> Budget:
    """The variant's built set as the trainer will see it (tokenised: truncation and drops counted)."""
    from nat_ray.training.trainer import prepare_data

    data = str(RunLayout(plan.out).set_file(variant.name))
    train = plan.train.model_copy(update={"data": data, "objective": variant.objective})
    _, rows, _, stats = prepare_data(plan.cfg.model_copy(update={"train": train}))
    return Budget(examples=len(rows), tokens=int(stats["tokens"]))
