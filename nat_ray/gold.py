"""Gold trajectories from worked solutions that annotate their own calculator calls (GSM8K's ``<<48/2=24>>``).

    collect: {kind: gold, task: gsm8k, questions: gsm8k/train.jsonl}

Each annotated step of a solution becomes one ReAct turn in the paper's gsm8k format: the reply ``Thought: …`` (the
solution's own words since the last step, up to the expression: never the result before the calculator has returned
it) then ``Action: calculate[expr]``; its Observation is this project's calculator's answer to ``expr``. The last
reply is ``Thought: …`` (the words after the last step) and ``Action: finish[answer]`` with the solution's ``####``
answer, graded by the task's grader. The replies go through the same episode state machine a rollout uses
(``nat_ray.react.Episode``), so a gold trajectory is exactly what a policy that wrote those replies would have made.

A solution is left out, and counted by reason in the manifest, when it has no annotated step, when the calculator
cannot evaluate an expression or its answer differs from the annotation's, when the finish is graded wrong, or when
it needs more replies than ``max_turns``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.react import Episode
from nat_ray.records import DatasetManifest
from nat_ray.storage import read_records, write_made_trajectories
from nat_ray.tasks import Question, TaskSpec, get_task
from nat_ray.tasks.graders import as_number
from nat_ray.tools import safe_sympy
from nat_ray.types import Trajectory

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # 1,000 -> 1000 (the calculator reads "1,000" as a tuple)
SOURCE = "gold:annotations"
MODEL = "gold-annotations"

# why a solution is left out (manifest keys)
NO_STEP = "no_annotated_step"
CALC_ERROR = "calculator_error"
CALC_DIFFERS = "calculator_differs_from_annotation"
FINISH_WRONG = "finish_graded_wrong"
TOO_LONG = "more_replies_than_max_turns"
NO_ANSWER = "no_final_answer"
REASONS = (NO_STEP, CALC_ERROR, CALC_DIFFERS, FINISH_WRONG, TOO_LONG, NO_ANSWER)


@dataclass(frozen=True)
class GoldStep:
    thought: str  # the solution's words since the last step, up to the expression
    expression: str  # what the reply asks the calculator
    annotated: str  # the result the solution wrote


def _clean(words: list[str]) -> str:
    text = " ".join(w.strip() for w in words if w.strip())
    return re.sub(r"[\s=$]+$", "", text).strip()  # "Natalia sold 48/2 = $" -> "Natalia sold 48/2"


def parse_solution(answer: str) -> tuple[list[GoldStep], str, str | None]:
    """A worked solution's annotated steps, the words after the last one, and its ``####`` answer (None: none)."""
    body, sep, final = answer.rpartition("####")
    if not sep:
        body, final = answer, ""
    steps: list[GoldStep] = []
    pending: list[str] = []  # words since the last step
    for line in body.splitlines():
        pos = 0
        for m in _ANNOTATION.finditer(line):
            pending.append(line[pos : m.start()])
            expression = _THOUSANDS.sub("", m.group(1).strip())
            steps.append(GoldStep(_clean(pending) or f"I calculate {expression}", expression, m.group(2).strip()))
            pending, pos = [], m.end()
        pending.append(line[pos:])
    answer_text = final.strip().replace(",", "") or None
    return steps, _clean(pending), answer_text


def agrees(observation: str, annotated: str) -> bool:
    """The calculator's answer equals the annotation's, to the annotation's own decimals (GSM8K rounds: 10/3=3.33)."""
    got, want = as_number(observation), as_number(annotated)
    if got is None or want is None:
        return False
    decimals = len(annotated.split(".", 1)[1]) if "." in annotated else 0
    tolerance = Fraction(1, 2 * 10**decimals) if decimals else Fraction(0)
    return abs(got - want) <= tolerance or math.isclose(float(got), float(want), rel_tol=1e-9)


def gold_trajectory(
    task: TaskSpec, question: Question, answer: str, calculate: Callable[[str], str], max_turns: int
) -> Trajectory | str:
    """The gold trajectory of one worked solution, or the reason it is left out (one of REASONS)."""
    steps, closing, final = parse_solution(answer)
    if not steps:
        return NO_STEP
    if final is None:
        return NO_ANSWER
    if len(steps) + 1 > max_turns:
        return TOO_LONG
    episode = Episode(task, question, prompt=[], tools=frozenset({"calculate"}), max_turns=max_turns)
    for step in steps:
        action = episode.step(f"Thought: {step.thought}\nAction: calculate[{step.expression}]")
        if action is None:  # the reply did not parse as an action: an expression the ReAct parser cannot hold
            return CALC_ERROR
        observation = calculate(step.expression)
        if observation.startswith("Error"):
            return CALC_ERROR
        if not agrees(observation, step.annotated):
            return CALC_DIFFERS
        episode.observe(observation)
    episode.step(f"Thought: {closing.rstrip('.') or 'I have the answer'}.\nAction: finish[{final}]")
    trajectory = episode.trajectory(model=MODEL, temperature=None, sample_index=0, source=SOURCE)
    return trajectory if trajectory.reward else FINISH_WRONG


def collect_gold(
    task_name: str, questions_file: str | Path, out: str | Path, max_turns: int = 6, limit: int | None = None
) -> DatasetManifest:
    """Every worked solution of ``questions_file`` (records with ``question`` and an annotated ``answer``) as a gold
    trajectory; the dataset folder ``out`` and its manifest, which counts what was left out by reason."""
    task = get_task(task_name)
    if task.family != "math":
        raise InputError(f"collect kind 'gold': task {task.name} has no calculator-annotated solutions (math tasks)")
    trajectories: list[Trajectory] = []
    left_out: Counter = Counter()
    solutions = 0
    for index, (where, rec) in enumerate(read_records(questions_file)):
        if limit is not None and solutions >= limit:
            break
        for key in ("question", "answer"):
            if not isinstance(rec.get(key), str):
                raise InputError(f"{where}: a worked solution needs a string {key!r}")
        solutions += 1
        question = Question(id=str(rec.get("id", index)), question=rec["question"],
                            ground_truth=task.ground_truth(rec["answer"]))  # fmt: skip
        made = gold_trajectory(task, question, rec["answer"], safe_sympy.evaluate, max_turns)
        if isinstance(made, str):
            left_out[made] += 1
        else:
            trajectories.append(made)
    if not trajectories:
        raise InputError(f"{questions_file}: no solution became a gold trajectory ({dict(left_out)})")
    config = {"kind": "gold", "task": task.name, "questions": str(questions_file), "max_turns": max_turns,
              "limit": limit}  # fmt: skip
    return write_made_trajectories(trajectories, left_out, REASONS, out, config, solutions=solutions)
