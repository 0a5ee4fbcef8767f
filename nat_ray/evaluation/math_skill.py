"""Skill on a math set, beside what a model could score without any: the copy-a-number floor, and how it used the
calculator.

Per math data set, over the graded episodes:

- ``copy_floor``: the best accuracy, on these questions, of answering without solving: the question's first, last or
  largest number, or the sum of its numbers, scored by the task's own grader (``copy_floor_rule`` names the best);
  a model must beat it by its interval before its accuracy says anything about arithmetic;
- ``calc_calls``: ``calculate`` actions; ``calc_valid``: the share of them the calculator answered (the expression
  parsed and evaluated: no ``Error`` observation);
- ``grounded_operands``: the share of the numbers in those expressions found in the question or an earlier
  observation of the same episode (an operand from nowhere is a made-up number);
- ``answer_is_last_observation``: among finished episodes with at least one calculator answer, the share whose
  answer equals the last one (a model that copies its last observation, right or wrong);
- ``loop_rate``: the share of episodes that repeat a reply verbatim;
- ``calls_per_episode``; ``multi_call_share``: the share of episodes with two or more ``calculate`` actions, and
  ``accuracy_multi_call`` / ``accuracy_single_call``: the accuracy of those and of the rest. A two-step question is
  rarely answered in one call, so a model that goes deeper gains on MultiArith (two operations a question) and loses
  on SVAMP (mostly one): these say whether a change in accuracy is a change in depth or in what each call gets right.

:func:`pooled_skill` gives the same over every math set a model was evaluated on (the report's ``all math`` row): a
main job of 250 + 250 questions is sized to separate a model from its floor over the 500, not on each half.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction

from nat_ray.evaluation.fmt import pct
from nat_ray.evaluation.intervals import wilson_interval
from nat_ray.react import parse_reply
from nat_ray.tasks import TASKS
from nat_ray.tasks.graders import as_number
from nat_ray.types import FinishReason, Label, Trajectory

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?|(?<![\w\d])\.\d+")
RULES = ("first", "last", "largest", "sum")


def numbers(text: str) -> list[Fraction]:
    """The numbers written in ``text`` (``1,000``, ``2.5``, ``.5``), in order."""
    out = []
    for match in _NUMBER.finditer(text):
        token = match.group(0).replace(",", "")
        try:
            out.append(Fraction(token))
        except (ValueError, ZeroDivisionError):
            continue
    return out


def _as_answer(x: Fraction) -> str:
    """A number as an answer string: ``18``, ``2.5`` (what the grader compares against)."""
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):.10g}"


def copy_answers(question: str) -> dict[str, str | None]:
    """What each copy rule answers for ``question`` (None: the question has no number)."""
    found = numbers(question)
    if not found:
        return dict.fromkeys(RULES)
    return {"first": _as_answer(found[0]), "last": _as_answer(found[-1]), "largest": _as_answer(max(found)),
            "sum": _as_answer(sum(found, Fraction(0)))}  # fmt: skip


def copy_floor(trajectories: Iterable[Trajectory]) -> tuple[float | None, str | None]:
    """The best copy rule's accuracy over these episodes' questions (each question once), and the rule."""
    questions = {t.id: t for t in trajectories}
    if not questions:
        return None, None
    scores = dict.fromkeys(RULES, 0)
    for t in questions.values():
        task = TASKS[t.task]
        for rule, answer in copy_answers(t.question).items():
            scores[rule] += bool(task.grade(t.ground_truth, answer).reward)
    best = max(RULES, key=lambda r: scores[r])
    return scores[best] / len(questions), best


def _calc_steps(t: Trajectory) -> list[tuple[str, str | None]]:
    """(expression, its observation or None) of each calculate action in the episode."""
    steps = []
    turns = t.turns
    for i, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        action = parse_reply(turn.content)
        if action is None or action.type != "calculate":
            continue
        following = turns[i + 1].content if i + 1 < len(turns) and turns[i + 1].role == "user" else None
        steps.append((action.argument, following.removeprefix("Observation: ") if following else None))
    return steps


def math_skill(trajectories: Iterable[Trajectory]) -> dict:
    """The module docstring's measures over one math data set's episodes (a ``metrics.json`` fragment)."""
    graded = [t for t in trajectories if t.label != Label.ERROR]
    floor, rule = copy_floor(graded)
    calls = valid = operands = grounded = answered_after_calc = copies_last = loops = 0
    by_depth: dict[bool, list[bool]] = {True: [], False: []}  # two or more calculator calls: the episodes' rewards
    for t in graded:
        known = set(numbers(t.question))
        last_observation: str | None = None
        steps = _calc_steps(t)
        by_depth[len(steps) >= 2].append(bool(t.reward))
        for expression, observation in steps:
            calls += 1
            for x in numbers(expression):
                operands += 1
                grounded += x in known
            if observation is not None and not observation.startswith("Error"):
                valid += 1
                known.update(numbers(observation))
                last_observation = observation
        if t.finish_reason == FinishReason.FINISH and last_observation is not None and t.prediction is not None:
            answered_after_calc += 1
            copies_last += _same_number(t.prediction, last_observation)
        loops += looped(t)
    return {
        "copy_floor": floor,
        "copy_floor_rule": rule,
        "calc_calls": calls,
        "calc_valid": valid / calls if calls else None,
        "grounded_operands": grounded / operands if operands else None,
        "answer_is_last_observation": copies_last / answered_after_calc if answered_after_calc else None,
        "loop_rate": loops / len(graded) if graded else None,
        "calls_per_episode": calls / len(graded) if graded else None,
        "multi_call_share": len(by_depth[True]) / len(graded) if graded else None,
        "accuracy_multi_call": _share(by_depth[True]),
        "accuracy_single_call": _share(by_depth[False]),
    }


def _share(rewards: list[bool]) -> float | None:
    return sum(rewards) / len(rewards) if rewards else None


def looped(t: Trajectory) -> bool:
    """The episode repeats a reply verbatim (a model stuck in a loop until the turn limit)."""
    replies = [turn.content for turn in t.turns if turn.role == "assistant"]
    return len(set(replies)) < len(replies)


POOLED = "all math (pooled)"


def pooled_skill(cells: dict[str, dict], episodes: list[Trajectory]) -> dict | None:
    """One model's cells of several math sets (``metrics.json`` entries merged with :func:`math_skill`) as one:
    accuracy and its Wilson interval over all their questions, the copy floor as each set's own best rule weighted by
    its questions (a model must beat each set's floor, not one rule for all), the calculator measures over all the
    episodes. None for fewer than two sets."""
    pooled = pooled_accuracy(cells)
    if pooled is None:
        return None
    cells = {d: c for d, c in cells.items() if d in pooled["sets"]}
    floors = [c["copy_floor"] for c in cells.values()]
    floor = None if None in floors else sum(c["copy_floor"] * c["n"] for c in cells.values()) / pooled["n"]
    return math_skill(episodes) | pooled | {"copy_floor": floor, "copy_floor_rule": "each set's"}


def pooled_accuracy(cells: dict[str, dict]) -> dict | None:
    """``n``, ``accuracy`` and ``accuracy_ci95`` over the questions of two or more math sets' cells, and the
    ``sets``; None for fewer."""
    cells = {d: c for d, c in cells.items() if is_math(d) and c.get("n") and c.get("accuracy") is not None}
    if len(cells) < 2:
        return None
    n = sum(c["n"] for c in cells.values())
    correct = round(sum(c["accuracy"] * c["n"] for c in cells.values()), 9)
    return {"n": n, "accuracy": correct / n, "accuracy_ci95": wilson_interval(correct, n), "sets": sorted(cells)}


def pooled_base(base: dict[str, float | None], cells: dict[str, dict]) -> float | None:
    """The base model's accuracy over the same sets, weighted as :func:`pooled_skill` weights them."""
    used = {d: c["n"] for d, c in cells.items() if c.get("n")}
    if not used or any(base.get(d) is None for d in used):
        return None
    return sum(base[d] * k for d, k in used.items()) / sum(used.values())  # type: ignore[operator]


def _value(text: str) -> Fraction | None:
    """One number: the whole text (``18``, ``$1,000``, ``2/3`` as the calculator writes fractions), else the only
    number written in it."""
    whole = as_number(text)
    if whole is not None:
        return whole
    found = numbers(text)
    return found[0] if len(found) == 1 else None


def _same_number(a: str, b: str) -> bool:
    x, y = _value(a), _value(b)
    return x is not None and x == y


def is_math(task: str) -> bool:
    spec = TASKS.get(task)
    return spec is not None and spec.family == "math"


MATH_SKILL_TEXT = (
    "On a math set an answer is a number, right or wrong, but a model can still score without arithmetic: by copying "
    "a number of the question. The floor is the best of answering its first, last or largest number or their sum, "
    "scored by the same grader on the same questions. A row shows skill where its interval's lower end is above the "
    "floor and above the base model's accuracy. Calculator: the share of `calculate` actions that evaluated; "
    "grounded: the share of their operands found in the question or an earlier observation; copies last: the share of "
    "answers equal to the last observation; loops: episodes that repeat a reply verbatim; calls: `calculate` actions "
    "per episode; 2+ calls: the share of episodes with two or more, and the accuracy of those and of the rest (a "
    "question that needs two operations is rarely answered with one: how deep a model goes moves its accuracy between "
    "sets of one-step and two-step questions)."
)


def math_skill_table(cells: dict[tuple[str, str], dict], base: dict[str, float | None]) -> str:
    """The report's table: per (variant, math data set) its accuracy [95% CI] beside the base model's and the copy
    floor, whether it is above both by its interval, and how it used the calculator. ``cells`` hold a data set's
    ``metrics.json`` entry merged with :func:`math_skill`; ``base`` the base model's accuracy per data set."""
    lines = [
        "| variant | dataset | accuracy [95% CI] | base | copy floor (rule) | above base and floor | "
        "calculator valid | grounded operands | copies last observation | loops | calls | 2+ calls (accuracy: "
        "2+ / fewer) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, d), m in cells.items():
        lo, hi = m["accuracy_ci95"]
        b, floor = base.get(d), m["copy_floor"]
        above = "-" if lo is None else "yes" if lo > max(b or 0.0, floor or 0.0) else "no"
        lines.append(
            f"| {name} | {d} | {pct(m['accuracy'])} [{pct(lo)}, {pct(hi)}] | {pct(b)} | {pct(floor)} "
            f"({m['copy_floor_rule'] or '-'}) | {above} | {pct(m['calc_valid'])} | {pct(m['grounded_operands'])} | "
            f"{pct(m['answer_is_last_observation'])} | {pct(m['loop_rate'])} | {_num(m.get('calls_per_episode'))} | "
            f"{pct(m.get('multi_call_share'))} ({pct(m.get('accuracy_multi_call'))} / "
            f"{pct(m.get('accuracy_single_call'))}) |"
        )
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
