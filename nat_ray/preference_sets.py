"""Preference sets from labelled trajectories, in TRL's conversational formats (``nat-ray build --mode dpo | kto``).

- ``dpo`` (:class:`~nat_ray.types.PreferencePair`): a success and a failure on the same question, as ETO builds them
  from an agent's exploration. The pairing rule: every negative whose question has a positive is paired with it (a
  question with several positives gives each of its negatives one of them, drawn with the seed); ``neg_num`` pairs
  are then sampled from these with the seed (``all``: every one), kept in input order of their negatives. Questions
  with only one kind are left out and counted. ``pos_num`` does not apply: a pair's positive is its question's.
- ``kto`` (:class:`~nat_ray.types.LabelledCompletion`): the paper's selection (the first ``pos_num`` positives, a seeded
  sample of ``neg_num`` negatives), each with its label; no pairing.
- ``build.selection: paired`` (:func:`nat_ray.reformat.select_pairs`): ``pos_num`` questions with both kinds, one
  positive and one negative of each; DPO takes the pairs of the first ``neg_num``, KTO / NUT / NAT the same
  trajectories unpaired, vanilla the positives — one set of trajectories for every method.

``prompt`` is the template's messages up to the question (the plain prompt: the hint is NAT's device, not theirs);
``chosen`` / ``rejected`` / ``completion`` the trajectory's turns after it.
"""

from __future__ import annotations

import random
from collections import defaultdict

from nat_ray.errors import InputError
from nat_ray.prompts import PromptTemplate
from nat_ray.types import Label, LabelledCompletion, Message, PreferencePair, Trajectory

ALL = -1


def _prompt(template: PromptTemplate, traj: Trajectory) -> list[Message]:
    turns = template.messages(template.require("question_prompt"), traj.question)
    return [Message(role=t.role, content=t.content) for t in turns]


def _completion(traj: Trajectory) -> list[Message]:
    return [Message(role=t.role, content=t.content) for t in traj.turns]


def preference_pairs(drawn: list[tuple[Trajectory, Trajectory]], template: PromptTemplate) -> list[PreferencePair]:
    """(positive, negative) trajectories of one question each, as TRL's conversational preference records."""
    return [
        PreferencePair(id=n.id, prompt=_prompt(template, n), chosen=_completion(p), rejected=_completion(n))
        for p, n in drawn
    ]


def dpo_pairs(
    trajectories: list[Trajectory], template: PromptTemplate, neg_num: int, seed: int
) -> tuple[list[PreferencePair], dict[str, int]]:
    """The DPO pairs and their counts (pairs, questions paired, questions left out for having one kind only)."""
    rng = random.Random(seed)
    positives: dict[str, list[Trajectory]] = defaultdict(list)
    negatives: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        if t.label == Label.POSITIVE:
            positives[t.id].append(t)
        elif t.label == Label.NEGATIVE:
            negatives[t.id].append(t)
    candidates = [
        (rng.choice(positives[t.id]), t) for t in trajectories if t.label == Label.NEGATIVE and positives.get(t.id)
    ]
    if not candidates:
        raise InputError(
            f"mode dpo: no question has both a positive and a negative trajectory ({len(positives)} questions with "
            f"positives, {len(negatives)} with negatives): roll out more samples per question"
        )
    if neg_num != ALL and neg_num > len(candidates):
        raise InputError(f"--neg-num {neg_num} pairs asked but the trajectories make only {len(candidates)}")
    if neg_num != ALL:
        keep = set(random.Random(seed).sample(range(len(candidates)), neg_num))
        candidates = [c for i, c in enumerate(candidates) if i in keep]
    pairs = preference_pairs(candidates, template)
    both = positives.keys() & negatives.keys()
    counts = {
        "pairs": len(pairs),
        "questions": len({p.id for p in pairs}),
        "questions_both_kinds": len(both),
        "questions_left_out": len((positives.keys() | negatives.keys()) - both),
    }
    return pairs, counts


def kto_examples(selected: list[Trajectory], template: PromptTemplate) -> tuple[list[LabelledCompletion], dict]:
    """Every selected trajectory with its label (true: positive); both labels are needed."""
    rows = [
        LabelledCompletion(
            id=t.id, prompt=_prompt(template, t), completion=_completion(t), label=t.label == Label.POSITIVE
        )
        for t in selected
    ]
    desirable = sum(r.label for r in rows)
    if desirable == 0 or desirable == len(rows):
        kind = "negative" if desirable else "positive"
        raise InputError(f"mode kto: the selection has no {kind} trajectory; KTO needs both (--pos-num / --neg-num)")
    return rows, {"examples": len(rows), "positives": desirable, "negatives": len(rows) - desirable}
