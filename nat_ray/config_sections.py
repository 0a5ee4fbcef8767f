"""The pipeline's config sections: where trajectories come from, how training sets are built, what is compared.

    collect: {kind: import, task: strategyqa, questions: FILE, files: [FILE, ...]}   # or {kind: rollout, task: ...}
    build:   {mode: nat, pos_num: 250, neg_num: 250, seed: 42}                        # the default variant
    study:   {modes: [vanilla, nut, nat], negatives: [0, 250], templates: [...], seeds: [42, 43], base: true,
              negative_source: [imported, regenerated], regenerate_from: vanilla}

They are plain typed models (no Ray, no I/O); ``nat_ray.config.RunConfig`` holds them beside the stage sections.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from nat_ray.types import StrictModel
from nat_ray.urls import refuse_credentials

Mode = Literal["vanilla", "nut", "nat", "nat-graded", "dpo", "kto"]
NegativeSource = Literal["imported", "regenerated", "near-miss"]
Selection = Literal["paper", "paired"]
RoundMode = Literal["nat", "vanilla", "dpo"]


class CollectConfig(StrictModel):
    """``import``: the paper's NAT/NATInstruct JSON files; ``rollout``: the ``rollout`` section with ``policy``;
    ``gold``: worked solutions that annotate their calculator calls (GSM8K train), one ReAct trajectory each
    (``nat_ray.gold``)."""

    kind: Literal["import", "rollout", "gold"] = "import"
    task: str
    questions: str | None = None  # import, gold: the task's question file (paths may be relative to the data folder)
    files: list[str] = Field(default_factory=list)  # import: trajectory files
    model: str | None = None  # import: the policy that made the files (default: from the file names)
    max_turns: int = Field(6, ge=2)  # gold: a solution needing more replies is left out (the paper's eval allows 6)
    limit: int | None = Field(None, gt=0)  # gold: the first N solutions only

    @model_validator(mode="after")
    def _kind_fields(self) -> CollectConfig:
        if self.kind == "import" and (not self.files or not self.questions):
            raise ValueError("collect kind 'import' needs questions and files")
        if self.kind == "gold" and not self.questions:
            raise ValueError("collect kind 'gold' needs questions (a file of worked solutions, e.g. gsm8k/train.jsonl)")
        return self


class BuildStageConfig(StrictModel):
    """The training set of the default variant; a study varies some of these."""

    mode: Mode = "nat"
    template: str | None = None  # default by mode (zero-shot; zero-shot-target-aware; ...-four-class)
    pos_num: int | Literal["all"] = "all"
    neg_num: int | Literal["all"] = "all"
    seed: int = 42  # which negatives are sampled
    # paper: the first pos_num positives + a seeded sample of neg_num negatives (any questions); paired: pos_num
    # questions that have both kinds, sampled with the seed, one positive and one negative of each (the negatives of
    # the first neg_num), so every mode (vanilla, NUT, NAT, DPO, KTO) trains on the same trajectories
    selection: Selection = "paper"

    @model_validator(mode="after")
    def _counts(self) -> BuildStageConfig:
        for name in ("pos_num", "neg_num"):
            value = getattr(self, name)
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{name} must be a count or 'all', not {value}")
        return self


class StudyConfig(StrictModel):
    """Each list given is one axis of the comparison; the variants are their product (vanilla ignores negatives)."""

    modes: list[Mode] | None = Field(None, min_length=1)
    negatives: list[int | Literal["all"]] | None = Field(None, min_length=1)  # the paper's Figure 2 sweep
    # the learning curve: each variant trained on this many positives (the first N, as build.pos_num) in turn
    positives: list[Annotated[int, Field(ge=1)] | Literal["all"]] | None = Field(None, min_length=1)
    templates: list[str] | None = Field(None, min_length=1)  # NAT's hint ablation (nat-prefix-AB): variants.expand
    seeds: list[int] | None = Field(None, min_length=1)  # training seeds per variant
    # where the negatives come from: the collected trajectories, or a rollout of this run's `regenerate_from` model
    # on the train questions (the `rollout` section's settings); positives are always the collected ones
    negative_source: list[NegativeSource] | None = Field(None, min_length=1)
    regenerate_from: str = "vanilla"  # the variant whose checkpoint regenerates the negatives
    # compute matching (nat_ray.pipeline.match): epochs (the paper's), or the same optimizer steps / trained tokens
    match: Literal["epochs", "steps", "tokens"] = "epochs"
    # compute-matched controls beside the study's own (epochs) variants: each variant that trains less than the most
    # trained one gets a twin on the same set matched to it (`vanilla-steps`): "negatives" vs "more training"
    controls: list[Literal["steps", "tokens"]] | None = Field(None, min_length=1)
    # where a dpo / kto variant starts (and its frozen reference): the study's vanilla (SFT) model of the same
    # training seed, as ETO does, or the base model (train.model)
    preference_init: Literal["sft", "base"] = "sft"
    # `train` settings for the variants of one mode (DPO and KTO want a far smaller lr than SFT): {dpo: {lr: 1.0e-6}}
    train_by_mode: dict[Mode, dict[str, Any]] | None = None
    # iterated training: round k+1's set comes from round k's model rolling out the train questions (the `rollout`
    # section), its own successes and failures labelled; `round_mode` names the variants iterated (nat: iterated
    # NAT; vanilla: rejection-sampling fine-tuning; dpo: as ETO; a list iterates each), `round_mix` adds the
    # collected trajectories to every later round's, `round_init` trains round k+1 from round k's model (previous)
    # or from train.model (base)
    rounds: int = Field(1, ge=1)
    round_mode: RoundMode | list[RoundMode] = "nat"
    round_mix: bool = False
    round_init: Literal["previous", "base"] = "previous"
    base: bool = True  # also evaluate the base model (train.model) as a row
    # the last N collected positives held out of every set: each model's perplexity on their assistant tokens, under
    # the prompt it was trained with (the paper's Figure 4: does perplexity on gold solutions fall as negatives grow)
    heldout: int = Field(0, ge=0)
    teacher: bool = True  # also score the collected trajectories themselves (the teacher's row)

    @property
    def round_modes(self) -> list[str]:
        return [self.round_mode] if isinstance(self.round_mode, str) else list(self.round_mode)


class TrackingConfig(StrictModel):
    """An experiment tracker the pipeline logs to (``nat_ray.tracking``): a parent run per pipeline run, a child run
    per stage. ``kind: mlflow`` with no ``uri`` keeps a local store inside the run folder (works embedded); a server
    URI (``http://host:5000``) takes its credentials from the environment (``MLFLOW_TRACKING_TOKEN``, ...)."""

    kind: Literal["none", "mlflow"] = "none"
    uri: str | None = None
    experiment: str = "nat-ray"

    @model_validator(mode="after")
    def _no_credentials(self) -> TrackingConfig:
        refuse_credentials("uri", self.uri, "give them in the environment (MLFLOW_TRACKING_USERNAME / "
                           "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)")  # fmt: skip
        return self
