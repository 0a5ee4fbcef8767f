"""Training sets the NAT way: select positives and negatives, then give each its question prompt (its hint).

Modes (``nat-ray build --mode``):

- ``vanilla``: positives only, plain prompt (template ``zero-shot``);
- ``nut``: positives and negatives, plain prompt — negatives with no marker;
- ``nat``: positives and negatives, the template's correct / incorrect question prompt (``zero-shot-target-aware``;
  ablations such as ``zero-shot-target-aware-prefix-AB`` through ``--template``);
- ``nat-graded``: the F1 classes of a three- or four-class template (HotpotQA).

Selection is the paper's loader (``load_pos_neg_data_with_prompts``): positives are the first N in input order,
negatives ``random.Random(seed).sample(all negatives in input order, M)``; positives first, then negatives.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from nat_ray.errors import InputError
from nat_ray.prompts import PromptTemplate, get_template
from nat_ray.storage import dataset_manifest, manifest, read_trajectories, write_examples
from nat_ray.types import Example, Label, StrictModel, Trajectory, Turn

Mode = Literal["vanilla", "nut", "nat", "nat-graded"]
MODES: tuple[str, ...] = ("vanilla", "nut", "nat", "nat-graded")
DEFAULT_TEMPLATE: dict[str, str] = {
    "vanilla": "zero-shot",
    "nut": "zero-shot",
    "nat": "zero-shot-target-aware",
    "nat-graded": "zero-shot-target-aware-four-class",
}
ALL = -1  # --pos-num/--neg-num 'all'


class BuildConfig(StrictModel):
    trajectories: str
    prompts: str
    mode: Mode
    template: str | None = None
    pos_num: int
    neg_num: int
    seed: int = 42
    out: str

    @property
    def template_name(self) -> str:
        return self.template or DEFAULT_TEMPLATE[self.mode]


def select(trajectories: list[Trajectory], pos_num: int, neg_num: int, seed: int) -> list[Trajectory]:
    """The paper's selection. Error episodes are never selected. ``ALL`` takes every positive / every negative."""
    positives = [t for t in trajectories if t.label == Label.POSITIVE]
    negatives = [t for t in trajectories if t.label == Label.NEGATIVE]
    if pos_num == ALL:
        pos_num = len(positives)
    if neg_num == ALL:
        neg_num = len(negatives)
    if pos_num < 0 or neg_num < 0:
        raise InputError("--pos-num and --neg-num must be non-negative (or 'all')")
    if pos_num > len(positives):
        raise InputError(f"--pos-num {pos_num} but the trajectories hold only {len(positives)} positives")
    if neg_num > len(negatives):
        raise InputError(f"--neg-num {neg_num} but the trajectories hold only {len(negatives)} negatives")
    return positives[:pos_num] + random.Random(seed).sample(negatives, neg_num)


def _graded_prompt(template: PromptTemplate, traj: Trajectory) -> str:
    if traj.f1 is None:
        raise InputError(f"trajectory {traj.id!r} has no f1, which template {template.name!r} needs")
    f1, classes = traj.f1, template.class_prompts
    if len(classes) == 4:
        # [Totally Incorrect] F1=0, [Mostly Incorrect] 0<F1<0.4, [Mostly Correct] 0.4<=F1<1, [Correct] F1=1
        index = 0 if f1 == 0.0 else 1 if f1 < 0.4 else 2 if f1 < 1.0 else 3
    elif len(classes) == 3:
        index = 0 if f1 == 0.0 else 1 if f1 < 1.0 else 2
    else:
        raise InputError(f"{template.source}: template {template.name!r} has {len(classes)} classes; need 3 or 4")
    if not 0.0 <= f1 <= 1.0:
        raise InputError(f"trajectory {traj.id!r} has f1 {f1} outside [0, 1]")
    return classes[index]


def question_prompt(template: PromptTemplate, mode: str, traj: Trajectory) -> str:
    """The question prompt (with its hint) a trajectory is trained under."""
    if mode in ("vanilla", "nut"):
        return template.require("question_prompt")
    if mode == "nat":
        if template.name.endswith("-soft"):
            # The paper's soft variant splits by F1 > 0.2 instead of by reward.
            if traj.f1 is None:
                raise InputError(f"trajectory {traj.id!r} has no f1, which template {template.name!r} needs")
            correct = traj.f1 > 0.2
        else:
            correct = bool(traj.reward)
        return template.require("correct_question_prompt" if correct else "incorrect_question_prompt")
    if mode == "nat-graded":
        return _graded_prompt(template, traj)
    raise InputError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")


def to_example(template: PromptTemplate, mode: str, traj: Trajectory) -> Example:
    prompt = template.messages(question_prompt(template, mode, traj), traj.question)
    turns = [Turn(role=t.role, content=t.content, loss=t.loss) for t in traj.turns]
    return Example(id=traj.id, label=traj.label.value, messages=prompt + turns)


def build_examples(
    trajectories: list[Trajectory], template: PromptTemplate, mode: str, pos_num: int, neg_num: int, seed: int = 42
) -> list[Example]:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "vanilla" and neg_num != 0:
        raise InputError("mode vanilla trains on positives only: use --neg-num 0")
    chosen = select(trajectories, pos_num, neg_num, seed)
    return [to_example(template, mode, t) for t in chosen]


def build(config: BuildConfig) -> dict:
    """Read trajectories, build the training set, write it with its manifest. Returns the manifest."""
    if config.mode not in MODES:
        raise InputError(f"unknown mode {config.mode!r}; choose one of: {', '.join(MODES)}")
    template = get_template(config.prompts, config.template_name)
    trajectories = read_trajectories(config.trajectories)
    examples = build_examples(trajectories, template, config.mode, config.pos_num, config.neg_num, config.seed)
    counts = {
        "examples": len(examples),
        "positives": sum(e.label == Label.POSITIVE.value for e in examples),
        "negatives": sum(e.label == Label.NEGATIVE.value for e in examples),
    }
    meta = manifest("training-set", config.model_dump(mode="json") | {"template": template.name}, counts)
    write_examples(examples, Path(config.out), meta)
    return meta


def training_set(data: str | Path) -> dict | None:
    """How a training set was built (mode, template, prompts file, counts), from the manifest :func:`build` wrote;
    None when ``data`` has none. ``nat-ray train`` copies it into the checkpoint, for eval's ``template: auto``."""
    meta = dataset_manifest(data)
    if meta is None or meta.get("kind") != "training-set":
        return None
    config = meta.get("config", {})
    return {k: config.get(k) for k in ("mode", "template", "prompts", "trajectories")} | {"counts": meta.get("counts")}
