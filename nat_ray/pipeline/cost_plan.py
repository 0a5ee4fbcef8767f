"""The plan's cost of what a study does besides its evals: training every model, the rollouts of its own model
(``negative_source: regenerated``, ``study.rounds``) and the held-out perplexities, at the rates the plan's source
folder measured (its stage records), so that ``--plan`` says what a study costs on this machine and not only what
it can detect. A set whose size is not known before the run (``pos_num: all``, a later round's own rollouts) is
left out of the sum and counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nat_ray.pipeline.match import Budget
from nat_ray.records import POOLED_RUNS, RUN_RECORD, RunLayout, RunRecord, StageManifest, read_stage
from nat_ray.rollout.plan import plan_episodes
from nat_ray.storage import read_json_file, read_record

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan
    from nat_ray.pipeline.variants import Variant


@dataclass(frozen=True)
class Rates:
    """Seconds per trained example (by training mode, and over all), per rollout episode, per held-out stage."""

    train: dict[str, float]
    rollout: float | None
    heldout: float | None


def source_runs(source: Path) -> list[Path]:
    """The run folders a plan's source stands for: a ``pool-seeds`` folder's runs, else the folder itself."""
    pooled = source / POOLED_RUNS
    return [Path(r) for r in read_json_file(pooled)] if pooled.exists() else [source]


def _stages(folders: Iterable[Path]) -> list[StageManifest]:
    """The complete, timed stage records of ``folders`` (a folder without one is skipped)."""
    found = (read_stage(f) for f in folders)
    return [s for s in found if s is not None and s.complete and s.seconds]


def _children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def measured_rates(source: Path) -> Rates:
    """The rates the run folder ``source`` (or a ``pool-seeds`` folder's runs) measured: training by the modes its
    report names (``report/run.json``), rollouts over its regenerated and round rollouts, held-out per stage."""
    seconds: dict[str, float] = {}
    examples: dict[str, float] = {}
    rollout = [0.0, 0.0]
    heldout: list[float] = []
    for run in source_runs(source):
        layout = RunLayout(run)
        record = read_record(layout.report / RUN_RECORD, RunRecord)
        modes = {v["name"]: v["mode"] for v in (record.variants if record else [])}
        for s in _stages(_children(layout.models)):
            steps, batch = s.counts.get("step"), (s.config or {}).get("global_batch_size")
            if steps and batch:
                for key in ("all", modes.get(s.variant or "", "all")):
                    seconds[key] = seconds.get(key, 0.0) + float(s.seconds or 0)
                    examples[key] = examples.get(key, 0.0) + float(steps) * float(batch)
        for s in _stages([layout.regenerated, *_children(layout.rounds)]):
            rollout = [rollout[0] + float(s.seconds or 0), rollout[1] + float(s.counts.get("trajectories") or 0)]
        heldout += [float(s.seconds or 0) for s in _stages(_children(layout.heldout))]
    train = {k: seconds[k] / examples[k] for k in seconds if examples[k]}
    return Rates(
        train, rollout[0] / rollout[1] if rollout[1] else None, sum(heldout) / len(heldout) if heldout else None
    )


def _examples(v: Variant) -> int | None:
    """The examples a first-round variant trains on, as the plan can count them (None: known only once built)."""
    pos = v.pos_num if isinstance(v.pos_num, int) else None
    neg = v.neg_num if isinstance(v.neg_num, int) else None
    if v.mode == "vanilla":
        return pos
    if v.mode == "dpo":  # pairs: one per sampled negative (preference_sets.py)
        return neg
    return None if pos is None or neg is None else pos + neg


def cost_lines(plan: PipelinePlan, source: Path, where: str, evals: tuple[float, float] | None) -> list[str]:
    """The plan's lines on training, rollouts and held-out perplexity, and the whole study with the eval (``evals``:
    seconds per evaluated model and for the plan's rows, at the measured rate; None without one)."""
    rates = measured_rates(source)
    tc, study = plan.train, plan.cfg.study
    first = [v for v in plan.variants if v.round == 1 and not v.control]
    steps = {v.name: Budget(n, 0).natural_steps(tc) for v in first if (n := _examples(v)) is not None}
    most = max(steps.values(), default=0)
    if study is not None and study.match != "epochs":  # every variant gets the most steps any would take
        steps = dict.fromkeys(steps, most)
    for c in (v for v in plan.variants if v.control):  # a control is kept where its twin trains less
        if c.twin in steps and steps[c.twin] < most:
            steps[c.name] = most
    unknown = [v.name for v in plan.variants if v.name not in steps and not v.control]
    modes = {v.name: v.mode for v in plan.variants}
    per_example = [rates.train.get(modes[n], rates.train.get("all")) for n in steps]
    batch = tc.global_batch_size
    train = sum(s * batch * r for s, r in zip(steps.values(), per_example, strict=True) if r is not None)
    lines = []
    if rates.train:
        left = f"; left out, their sets known only once built: {', '.join(unknown)}" if unknown else ""
        lines.append(f"plan: training ~{train / 3600:.1f} h: {len(steps)} models, {sum(steps.values()):,} optimizer "
                     f"steps of {batch} examples at the {rates.train['all']:.2f} s per example measured {where}"
                     f"{left}")  # fmt: skip
    rollouts = int(any(v.regenerated for v in plan.variants)) + sum(1 for v in plan.variants if v.round > 1)
    episodes = len(plan_episodes(plan.cfg)) * rollouts if rollouts and plan.cfg.rollout else 0
    rollout = episodes * rates.rollout if rates.rollout and episodes else 0.0
    if episodes and rates.rollout:
        lines.append(f"plan: rollouts of the study's own models ~{rollout / 60:.0f} min: {rollouts} x "
                     f"{episodes // rollouts:,} episodes at {rates.rollout:.2f} s each")  # fmt: skip
    held = 0.0
    if study is not None and study.heldout and rates.heldout:
        models = len(steps) + len(unknown) + int(study.base)
        held = models * rates.heldout
        lines.append(f"plan: held-out perplexity ~{held / 60:.0f} min: {models} models at {rates.heldout:.0f} s each")
    if lines and evals:
        controls = sum(1 for v in plan.variants if v.control and v.name in steps)  # (their evals: not in the rows)
        total = train + rollout + held + evals[1] + controls * evals[0]
        also = f", {controls} control eval(s) included" if controls else ""
        lines.append(f"plan: in all ~{total / 3600:.1f} h at these rates{also}")
    return lines
