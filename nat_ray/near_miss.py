"""Near-miss negatives: a correct math trajectory with one calculator step changed, the rest carried through.

    study: {negative_source: [regenerated, near-miss]}      # the model's own failures beside near misses

The paper found that negatives from a weaker model helped less than GPT-3.5's; a near miss is the other end of that
scale, a failure one decision away from a success. From each correct trajectory (a gold one, say) one
``calculate[expr]`` step is picked with the seed and changed once: an operator swapped (``+``/``-``, ``*``//``/``) or
an operand replaced by another number of the question (or moved by one where the question has no other). The
calculator answers the new expression, and every later step that used a changed result uses the new one: in its
expression, in its thought, and in the final ``finish``. The new trajectory goes through the same episode state
machine and grader as a rollout's; one the grader still accepts (the change did not reach the answer) is left out,
and so is one whose changed expression the calculator cannot evaluate, each counted by reason in the manifest.

A result is replaced where it stands as a whole number in a later step, unless the question itself holds that number
(it could be the question's own quantity there, not the result).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.react import Episode, parse_reply, split_reply
from nat_ray.records import DatasetManifest
from nat_ray.storage import read_trajectories, write_made_trajectories
from nat_ray.tasks import Question, get_task
from nat_ray.tasks.graders import as_number
from nat_ray.types import Trajectory

SOURCE = "near-miss"
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w]|\.\d)")
_OPERATOR = re.compile(r"(?<=[\w)\s])\s*([-+/]|\*(?!\*))(?!\*)")  # binary, not ** and not a leading sign
_SWAP = {"+": "-", "-": "+", "*": "/", "/": "*"}

# why a trajectory gave no near miss (manifest keys)
NO_STEP = "no_calculator_step"
CALC_ERROR = "calculator_error"
STILL_RIGHT = "still_graded_right"
REASONS = (NO_STEP, CALC_ERROR, STILL_RIGHT)


def change(expression: str, question_numbers: list[str], rng: random.Random) -> str:
    """``expression`` with one operator swapped or one operand replaced (never the same expression)."""
    operators = list(_OPERATOR.finditer(expression))
    numbers = list(_NUMBER.finditer(expression))
    if operators and (not numbers or rng.random() < 0.5):
        m = rng.choice(operators)
        op = m.group(1)
        return expression[: m.start(1)] + _SWAP[op] + expression[m.end(1) :]
    if not numbers:
        raise ValueError(f"nothing to change in {expression!r}")
    m = rng.choice(numbers)
    here = as_number(m.group(0))
    others = sorted({n for n in question_numbers if as_number(n) != here})
    if others:
        new = rng.choice(others)
    else:
        step = rng.choice((1, -1)) if here is not None and here >= 2 else 1
        new = _fmt(Fraction(m.group(0)) + step)
    return expression[: m.start()] + new + expression[m.end() :]


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"


def _carry(text: str, changed: dict[Fraction, str], protected: set[Fraction], expression: bool = False) -> str:
    """Each whole number of ``text`` that is a changed result (and not one of the question's own) replaced; in an
    expression a fraction or a negative result goes in parentheses (``60/30`` -> ``60/(15/2)``, not ``60/15/2``)."""

    def swap(m: re.Match) -> str:
        v = as_number(m.group(0))
        if v not in changed or v in protected:
            return m.group(0)
        new = changed[v]
        return f"({new})" if expression and not new.isdigit() else new

    return _NUMBER.sub(swap, text)


def near_miss(
    trajectory: Trajectory, calculate: Callable[[str], str], rng: random.Random, max_turns: int = 6
) -> Trajectory | str:
    """The near miss of one correct trajectory, or the reason it has none (one of REASONS)."""
    task = get_task(trajectory.task)
    replies = [t.content for t in trajectory.turns if t.role == "assistant"]
    steps = [i for i, r in enumerate(replies) if (a := parse_reply(r)) is not None and a.type == "calculate"]
    if not steps:
        return NO_STEP
    question_numbers = [m.group(0) for m in _NUMBER.finditer(trajectory.question.replace(",", ""))]
    protected = {v for n in question_numbers if (v := as_number(n)) is not None}
    at = rng.choice(steps)
    question = Question(id=trajectory.id, question=trajectory.question, ground_truth=trajectory.ground_truth)
    episode = Episode(task, question, prompt=[], tools=frozenset({"calculate"}), max_turns=max_turns)
    changed: dict[Fraction, str] = {}
    observations = iter(t.content.removeprefix("Observation: ") for t in trajectory.turns if t.role == "user")
    for i, reply in enumerate(replies):
        parts = split_reply(reply)
        action = parse_reply(reply)
        if parts is None or action is None:  # (a correct trajectory's replies all parse)
            return NO_STEP
        thought, _ = parts
        if action.type != "calculate":
            final = as_number(action.argument)
            argument = changed.get(final, action.argument) if final is not None else action.argument
            episode.step(f"{_carry(thought, changed, protected)}\nAction: finish[{argument}]")
            break
        old = next(observations, "")
        expression = change(action.argument, question_numbers, rng) if i == at else action.argument
        if i > at:
            expression = _carry(expression, changed, protected, expression=True)
            thought = _carry(thought, changed, protected)
        if episode.step(f"{thought}\nAction: calculate[{expression}]") is None:
            return CALC_ERROR
        observation = calculate(expression)
        if observation.startswith("Error"):
            return CALC_ERROR
        before, after = as_number(old), as_number(observation)
        if before is not None and after is not None and before != after:
            changed[before] = _fmt(after) if after.denominator == 1 else observation.strip()
        episode.observe(observation)
    if not episode.done:
        return NO_STEP
    made = episode.trajectory(model=trajectory.model, temperature=None, sample_index=0, source=SOURCE)
    return STILL_RIGHT if made.reward else made


def make_near_misses(
    trajectories: str | Path, out: str | Path, seed: int, ids: set[str] | None = None, max_turns: int = 6
) -> DatasetManifest:
    """One near miss per correct trajectory of ``trajectories`` (those of ``ids`` only, when given): the dataset
    folder ``out`` and its manifest, which counts what gave none by reason."""
    from nat_ray.tools import safe_sympy

    made: list[Trajectory] = []
    left_out: Counter = Counter()
    sources = [t for t in read_trajectories(trajectories) if t.reward and (ids is None or t.id in ids)]
    if not sources:
        raise InputError(f"{trajectories}: no correct trajectory to make near misses from")
    for t in sources:
        rng = random.Random(f"{seed}:{t.id}:{t.sample_index}")  # each its own draw: a resumed or smaller set agrees
        result = near_miss(t, safe_sympy.evaluate, rng, max_turns)
        if isinstance(result, str):
            left_out[result] += 1
        else:
            made.append(result)
    if not made:
        raise InputError(f"{trajectories}: no near miss could be made ({dict(left_out)})")
    config = {"kind": "near-miss", "from": str(trajectories), "seed": seed, "questions": len(ids) if ids else None}
    return write_made_trajectories(made, left_out, REASONS, out, config, sources=len(sources))
