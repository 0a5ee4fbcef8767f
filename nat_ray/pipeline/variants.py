"""A study expands into variants: one training set, one model and one eval each; trajectories are shared."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

from nat_ray.config_sections import BuildStageConfig, StudyConfig
from nat_ray.errors import InputError
from nat_ray.reformat import DEFAULT_TEMPLATE, HINT_MODES


@dataclass(frozen=True)
class Variant:
    name: str
    mode: str
    template: str | None
    pos_num: int | str
    neg_num: int | str
    build_seed: int
    train_seed: int
    # or "regenerated": negatives from a rollout of this run's fine-tuned model; "near-miss": the collected correct
    # trajectories with one calculator step changed (nat_ray.near_miss)
    negative_source: str = "imported"
    match: str = "epochs"  # a compute-matched control (study.controls): "steps" or "tokens"
    twin: str | None = None  # a control's variant: the same set, trained ``train.epochs``
    round: int = 1  # study.rounds: 2.. are built from the previous round's own rollouts
    previous: str | None = None  # the variant of the round before

    @property
    def regenerated(self) -> bool:
        return self.negative_source == "regenerated"

    @property
    def near_miss(self) -> bool:
        return self.negative_source == "near-miss"

    @property
    def control(self) -> bool:
        return self.twin is not None

    @property
    def preference(self) -> bool:
        """Trained with its mode's preference objective (``train.objective``)."""
        return self.mode in ("dpo", "kto")

    @property
    def objective(self) -> str:
        return self.mode if self.preference else "sft"


def expand(build: BuildStageConfig, study: StudyConfig | None, train_seed: int) -> list[Variant]:
    """The variants of a study, in a stable order, without duplicates (vanilla is built without negatives, so a
    negatives sweep or a negative-source study gives it one variant). Variants whose negatives are regenerated come
    last: they need the ``regenerate_from`` variant's model. ``study.controls`` adds a candidate twin per variant
    (``vanilla-steps``, ``nat-steps-seed1``): the pipeline keeps those that would train less than the target
    (``nat_ray.pipeline.sets.decide_controls``). ``study.templates`` is the hint ablation (the paper's Table 7): it
    applies to the modes with hints (NAT), named by what a template adds to the mode's default
    (``nat-prefix-AB`` for ``zero-shot-target-aware-prefix-AB``; the default adds nothing), so a study's vanilla
    and NUT keep one variant each and its default NAT keeps the name it has without the ablation."""
    study = study or StudyConfig()
    modes = study.modes or [build.mode]
    negatives = study.negatives or [build.neg_num]
    positives = study.positives or [build.pos_num]
    templates = study.templates or [build.template]
    seeds = study.seeds or [train_seed]
    sources = study.negative_source or ["imported"]
    out: dict[str, Variant] = {}
    # each seed's replication whole before the next, and every mode at a sweep's smaller points before its larger
    # ones: a study stopped part way (or run a session at a time) has complete paired comparisons so far
    axes = itertools.product(seeds, sources, positives, negatives, modes, templates)
    for seed, source, pos, neg, mode, template in axes:
        if mode == "vanilla":
            neg, source = 0, "imported"
        if study.templates and mode not in HINT_MODES:
            template = build.template
        elif study.templates and template == DEFAULT_TEMPLATE[mode]:
            template = None  # the set (and its stage hash) of the same study without the ablation
        parts = [mode]
        if study.negative_source and mode != "vanilla":
            parts.append(source)
        if study.positives:
            parts.append(f"pos{pos}")
        if study.negatives and mode != "vanilla":
            parts.append(f"neg{neg}")
        if study.templates and mode in HINT_MODES and template is not None:
            parts.append(template.removeprefix(f"{DEFAULT_TEMPLATE[mode]}-"))
        if study.seeds:
            parts.append(f"seed{seed}")
        name = "-".join(parts)
        variant = Variant(name, mode, template, pos, neg, build.seed, seed, source)
        if out.get(name, variant).template != template:
            raise InputError(f"study.templates: {out[name].template!r} and {template!r} both name {name}")
        out.setdefault(name, variant)
    if not out:
        raise InputError("study: the study expands to no variant")
    for match in study.controls or []:
        if study.match != "epochs":
            raise InputError(f"study.controls: the variants are already matched (study.match: {study.match})")
        for v in [v for v in out.values() if not (v.regenerated or v.control or v.preference)]:
            name = re.sub(r"(-seed\d+)?$", lambda m, mt=match: f"-{mt}{m.group(0)}", v.name, count=1)
            out[name] = replace(v, name=name, match=match, twin=v.name)
    for k in range(2, study.rounds + 1):
        for v in [v for v in out.values() if v.mode in study.round_modes and v.round == k - 1 and not v.control]:
            if v.regenerated:
                continue
            name = re.sub(r"(-r\d+)?(-seed\d+)?$", lambda m, k=k: f"-r{k}{m.group(2) or ''}", v.name, count=1)
            neg = 0 if v.mode == "vanilla" else "all"  # every success and failure of the round's own rollouts
            out[name] = replace(v, name=name, round=k, previous=v.name, pos_num="all", neg_num=neg)
    if study.rounds > 1 and not any(v.round > 1 for v in out.values()):
        raise InputError(f"study.rounds: {study.rounds}, but no variant has a study.round_mode of {study.round_modes}")
    # stable: the study's order otherwise; a seed's replication before the next seed's; within it, preference
    # variants after the vanilla model they may start from, each round after the one before
    variants = sorted(out.values(), key=lambda v: (seeds.index(v.train_seed), v.round, v.regenerated, v.preference))
    if study.preference_init == "sft" and any(v.preference for v in variants):
        for v in (v for v in variants if v.preference):
            if sft_init(v, variants) is None:
                raise InputError(
                    f"study.preference_init: sft, but {v.name} has no vanilla variant of training seed "
                    f"{v.train_seed} to start from: add vanilla to study.modes, or set study.preference_init: base"
                )
    if any(v.regenerated for v in variants):
        source = next((v for v in variants if v.name == study.regenerate_from), None)
        if source is None or source.regenerated or source.control:  # (controls train last)
            names = ", ".join(v.name for v in variants if not (v.regenerated or v.control))
            raise InputError(
                f"study.regenerate_from: {study.regenerate_from!r} is not a variant trained on the collected "
                f"trajectories (the study has: {names})"
            )
    return variants


def check_counts(
    variants: list[Variant],
    positives: int,
    negatives: int,
    where: str,
    source: str = "imported",
    hint: str = "",
) -> None:
    """A variant asking for more positives / negatives than the trajectories hold is an error, before it is built:
    the collected trajectories for the variants whose negatives they hold (before any training), the regenerated or
    near-miss ones for the variants of that ``source``, once they exist. Every variant's positives are collected ones
    (those of a later round aside)."""
    for v in variants:
        if source == "imported" and isinstance(v.pos_num, int) and v.pos_num > positives:
            raise InputError(f"build.pos_num: {v.pos_num} positives asked ({v.name}) but {where} has {positives}")
        if v.negative_source == source and isinstance(v.neg_num, int) and v.neg_num > negatives:
            field = "study.negatives" if v.mode != "vanilla" else "build.neg_num"
            raise InputError(f"{field}: {v.neg_num} negatives asked ({v.name}) but {where} has {negatives}{hint}")


def sft_init(v: Variant, variants: list[Variant]) -> Variant | None:
    """The vanilla variant a preference variant starts from (``study.preference_init: sft``): same training seed, and
    the same positives where a learning curve (``study.positives``) trains several."""
    own = [w for w in variants if w.mode == "vanilla" and not w.control and w.train_seed == v.train_seed]
    return next((w for w in own if w.pos_num == v.pos_num), own[0] if own else None)
