"""Evaluation metrics: plain functions over trajectories (no Ray), the ``metrics.json`` shape, and its table.

Per data set, over the episodes that were not lost to infrastructure (``label != error``):

- ``n``: episodes graded, ``questions``: the questions they belong to (per temperature); ``accuracy``: mean reward,
  each question's samples averaged first (``eval.samples: k``); ``accuracy_ci95``: the Wilson score interval at 95%
  over the questions (test slices are small, and the interval stays inside [0, 1] with sensible width at 0% or 100%);
- ``em`` / ``f1`` (HotpotQA): mean exact match and mean token F1 (an episode without an answer scores 0);
- ``action_error_rate``: invalid actions / all actions the policy took — the paper's "share of wrong tool calls".
  Every policy reply is one action: a valid tool call or ``finish`` (an assistant turn), or an unparseable reply /
  unknown action (``action_errors``);
- ``avg_turns``: policy replies per episode (assistant turns plus malformed replies);
- ``errors``: infrastructure errors, left out of every denominator above and reported;
- ``finish_reasons``: counts over all episodes, errors included;
- yes/no sets (StrategyQA) also: ``answered``, ``yes_share``, ``majority_accuracy``, ``kappa``, ``kappa_ci95`` —
  whether the answers depend on the truth at all (``nat_ray.evaluation.skill``);
- math sets also: ``copy_floor`` (and ``copy_floor_rule``), ``calc_calls``, ``calc_valid``, ``grounded_operands``,
  ``answer_is_last_observation``, ``loop_rate``, ``calls_per_episode``, ``multi_call_share`` (with
  ``accuracy_multi_call`` / ``accuracy_single_call``) — skill beside answering a copied number, and how the
  calculator was used (``nat_ray.evaluation.math_skill``).

``math_average`` is the mean accuracy over the math sets present (GSM8K, ASDiv, SVAMP, MultiArith), as the paper's
tables average them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from nat_ray.evaluation.fmt import pct
from nat_ray.evaluation.intervals import wilson_interval
from nat_ray.evaluation.math_skill import is_math, math_skill
from nat_ray.evaluation.skill import YesNoSkill, chance_warning, is_yesno, yesno_skill
from nat_ray.tasks import TASKS
from nat_ray.types import Label, Trajectory


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (a right and b wrong, and the reverse): a binomial
    test of ``a_only`` against half of the discordant pairs; 1.0 when there are none."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2**n
    return min(1.0, 2 * tail)


def dataset_metrics(trajectories: Iterable[Trajectory]) -> dict:
    """The metrics of one data set's episodes (see the module docstring for every definition)."""
    trajs = list(trajectories)
    graded = [t for t in trajs if t.label != Label.ERROR]
    n = len(graded)
    replies = sum(t.num_turns + t.action_errors for t in graded)
    invalid = sum(t.action_errors for t in graded)
    # each question's samples averaged first, so a question counts once however many of its samples were graded;
    # the interval is over questions (samples of one question are not independent draws of the test set)
    by_question: dict[tuple[str, float], list[bool]] = {}
    for t in graded:  # (a rollout's episodes at several temperatures are separate draws: each its own group)
        by_question.setdefault((t.id, t.temperature), []).append(bool(t.reward))
    questions = len(by_question)
    accuracy = sum(sum(v) / len(v) for v in by_question.values()) / questions if questions else None
    lo, hi = wilson_interval(round((accuracy or 0.0) * questions, 9), questions)
    out: dict = {
        "n": n,
        "questions": questions,
        "accuracy": accuracy,
        "accuracy_ci95": [lo, hi],
        "action_error_rate": invalid / replies if replies else None,
        "avg_turns": replies / n if n else None,
        "errors": len(trajs) - n,
        "finish_reasons": dict(sorted(Counter(_reason(t) for t in trajs).items())),
    }
    tasks = {t.task for t in trajs}
    if tasks and all(TASKS[task].family == "qa" for task in tasks if task in TASKS):
        out["em"] = sum(bool(t.em) for t in graded) / n if n else None
        out["f1"] = sum(t.f1 or 0.0 for t in graded) / n if n else None
    if tasks and all(is_yesno(task) for task in tasks):
        out.update(yesno_skill(graded).row())
    if tasks and all(is_math(task) for task in tasks):
        out.update(math_skill(graded))
    return out


def _reason(t: Trajectory) -> str:
    return t.finish_reason.value if t.finish_reason is not None else "unknown"


def math_average(datasets: dict[str, dict]) -> float | None:
    accs = [m["accuracy"] for name, m in datasets.items() if _family(name) == "math" and m["accuracy"] is not None]
    return sum(accs) / len(accs) if accs else None


def _family(name: str) -> str | None:
    task = TASKS.get(name)
    return task.family if task else None


def eval_metrics(by_dataset: dict[str, list[Trajectory]], policy: dict, template: str) -> dict:
    """The whole ``metrics.json``: ``{"policy", "template", "datasets": {NAME: …}, "math_average"?}``."""
    datasets = {name: dataset_metrics(trajs) for name, trajs in by_dataset.items()}
    out: dict = {"policy": policy, "template": template, "datasets": datasets}
    avg = math_average(datasets)
    if avg is not None:
        out["math_average"] = avg
    return out


def group_by_task(trajectories: Iterable[Trajectory]) -> dict[str, list[Trajectory]]:
    groups: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(t.task, []).append(t)
    return groups


def format_table(metrics: dict) -> str:
    """A plain-text table of ``metrics.json`` (accuracy and rates in %)."""
    head = ["dataset", "n", "acc", "95% CI", "EM", "F1", "act-err", "turns", "errors"]
    rows = []
    for name, m in metrics["datasets"].items():
        lo, hi = m["accuracy_ci95"]
        rows.append(
            [
                name,
                str(m["n"]),
                pct(m["accuracy"]),
                f"{pct(lo)}-{pct(hi)}",
                pct(m.get("em")),
                pct(m.get("f1")),
                pct(m["action_error_rate"]),
                "-" if m["avg_turns"] is None else f"{m['avg_turns']:.2f}",
                str(m["errors"]),
            ]
        )
    if metrics.get("math_average") is not None:
        rows.append(["math average", "", pct(metrics["math_average"]), "", "", "", "", "", ""])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, m in metrics["datasets"].items():
        if m.get("answered") and (line := chance_warning(name, YesNoSkill.from_row(m))):
            lines.append(line)
    errors = sum(m["errors"] for m in metrics["datasets"].values())
    if errors:
        lines.append(
            f"WARNING: {errors} episode(s) lost to infrastructure errors (policy endpoint, tools) are left out of the "
            "figures above; see finish_reasons in metrics.json and `nat-ray show DIR --label error`"
        )
    return "\n".join(lines)
