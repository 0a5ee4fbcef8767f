"""Skill beyond chance on a yes/no task (StrategyQA): does the model's answer depend on the truth at all?

Accuracy on a yes/no task mixes two things: knowing the answer, and how often the model says "yes". A model that
answers "no" to everything scores the share of "no" questions (53.2% on the StrategyQA test slice the paper uses),
and a fine-tuning run that only moves the model's yes-share moves its accuracy by several points. Two variants'
accuracies can then differ "significantly" while neither knows anything. So beside accuracy, per data set:

- ``answered``: episodes whose answer parses as yes or no (the rest — no answer, malformed — are wrong in accuracy);
- ``yes_share``: the share of "yes" among those answers;
- ``majority_accuracy``: what always answering the test set's majority class scores (over the questions, as
  accuracy is);
- ``kappa``: Cohen's kappa between answer and truth over the answered episodes — 0 when the answer is independent of
  the truth (whatever the yes-share), 1 when it always agrees; ``kappa_ci95``: a percentile bootstrap interval
  (2,000 resamples of the questions, seeded), None when kappa is undefined (both answer and truth constant).

A model whose kappa interval holds 0 is at chance on the task, and a difference in accuracy between two such models
is a difference in their answer bias, not in skill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nat_ray.evaluation.fmt import pct
from nat_ray.tasks import TASKS
from nat_ray.tasks.graders import parse_bool_gt, strategyqa_bool
from nat_ray.types import Label, Trajectory

BOOT = 2000
SKILL_TEXT = (
    "On a yes/no task accuracy mixes knowing the answer with how often the model says yes: always answering the "
    "majority class scores the column beside accuracy. Cohen's kappa between answer and truth (over the episodes "
    "answered yes or no; 95% bootstrap interval over the questions) is 0 when the answers are independent of the "
    "truth: a row whose interval holds 0 shows no skill, and a difference in accuracy between two such rows is a "
    "difference in answer bias (the yes share), not in what they know."
)


@dataclass(frozen=True)
class YesNoSkill:
    answered: int
    yes_share: float | None
    majority_accuracy: float | None
    kappa: float | None
    kappa_ci95: tuple[float, float] | None

    @property
    def at_chance(self) -> bool:
        """True when the interval holds 0 (or kappa is undefined): no skill shown beyond the answer bias."""
        return self.kappa_ci95 is None or self.kappa_ci95[0] <= 0.0 <= self.kappa_ci95[1]

    @classmethod
    def from_row(cls, m: dict) -> YesNoSkill:
        """Back from :meth:`row` (a ``metrics.json`` data set)."""
        ci = m.get("kappa_ci95")
        return cls(m["answered"], m.get("yes_share"), m.get("majority_accuracy"), m.get("kappa"),
                   tuple(ci) if ci else None)  # fmt: skip

    def row(self) -> dict:
        return {
            "answered": self.answered,
            "yes_share": self.yes_share,
            "majority_accuracy": self.majority_accuracy,
            "kappa": self.kappa,
            "kappa_ci95": list(self.kappa_ci95) if self.kappa_ci95 is not None else None,
        }


def is_yesno(task: str) -> bool:
    spec = TASKS.get(task)
    return spec is not None and spec.family == "yesno"


def _kappa(cells: list[float] | tuple[float, ...]) -> float | None:
    """Cohen's kappa from the four counts (yes|true, yes|false, no|true, no|false)."""
    yt, yf, nt, nf = cells
    n = yt + yf + nt + nf
    if n == 0:
        return None
    observed = (yt + nf) / n
    p_yes, p_true = (yt + yf) / n, (yt + nt) / n
    expected = p_yes * p_true + (1 - p_yes) * (1 - p_true)
    return None if expected >= 1.0 else (observed - expected) / (1 - expected)


def yesno_skill(trajectories: Iterable[Trajectory], seed: int = 0) -> YesNoSkill:
    """The module docstring's measures over one yes/no data set's graded episodes."""
    import numpy as np

    graded = [t for t in trajectories if t.label != Label.ERROR]
    truth: dict[str, bool] = {t.id: parse_bool_gt(t.ground_truth) for t in graded}
    questions = {(t.id, t.temperature) for t in graded}
    trues = sum(truth[q] for q, _ in questions)
    majority = max(trues, len(questions) - trues) / len(questions) if questions else None
    # per question, the four cells (yes|true, yes|false, no|true, no|false): the bootstrap resamples questions, so a
    # question's several samples stay together (they are not independent draws of the test set)
    counts: dict[str, list[int]] = {}
    for t in graded:
        answer = strategyqa_bool(t.prediction) if t.prediction is not None else None
        if isinstance(answer, bool):
            counts.setdefault(t.id, [0, 0, 0, 0])[(0 if answer else 2) + (0 if truth[t.id] else 1)] += 1
    cells = np.array(list(counts.values()), dtype=float).reshape(-1, 4)
    total = cells.sum(axis=0)
    answered = int(total.sum())
    kappa = _kappa(tuple(float(x) for x in total))
    ci = None
    if kappa is not None and len(cells) > 1:
        picks = np.random.default_rng(seed).integers(0, len(cells), size=(BOOT, len(cells)))
        boot = [k for k in (_kappa(tuple(float(x) for x in c)) for c in cells[picks].sum(axis=1)) if k is not None]
        if boot:
            ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    yes = (total[0] + total[1]) / answered if answered else None
    return YesNoSkill(answered, None if yes is None else float(yes), majority, kappa, ci)


def chance_warning(dataset: str, s: YesNoSkill) -> str | None:
    """One line for a table's foot when a yes/no data set's answers show no skill beyond their bias."""
    if not s.at_chance:
        return None
    return (
        f"WARNING: {dataset}: the answers are independent of the truth (Cohen's kappa {_kappa_text(s, 'undefined')}, "
        f"yes-share {pct(s.yes_share)}%): at chance; always answering the majority class scores "
        f"{pct(s.majority_accuracy)}%"
    )


def _kappa_text(s: YesNoSkill, undefined: str) -> str:
    """Kappa and its interval, e.g. ``+0.018 [-0.018, +0.053]``."""
    k = undefined if s.kappa is None else _k(s.kappa)
    return k if s.kappa_ci95 is None else f"{k} [{_k(s.kappa_ci95[0])}, {_k(s.kappa_ci95[1])}]"


def _k(x: float) -> str:
    return f"{round(x, 3) + 0.0:+.3f}"  # (+ 0.0: no "-0.000" from a bootstrap's rounding)


def skill_table(skills: dict[tuple[str, str], YesNoSkill], accuracy: dict[tuple[str, str], float | None]) -> str:
    """The report's table: per (variant, data set), accuracy beside the majority-class baseline, the yes-share and
    kappa with its interval, and whether the variant shows any skill beyond chance."""
    lines = [
        "| variant | dataset | accuracy | always the majority answer | answered yes/no | yes share | "
        "kappa [95% CI] | beyond chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, d), s in skills.items():
        lines.append(
            f"| {name} | {d} | {pct(accuracy.get((name, d)))} | {pct(s.majority_accuracy)} | {s.answered} | "
            f"{pct(s.yes_share)} | {_kappa_text(s, '-')} | {'no' if s.at_chance else 'yes'} |"
        )
    return "\n".join(lines)
