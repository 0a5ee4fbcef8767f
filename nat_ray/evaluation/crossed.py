"""A difference between two variants that generalises over training seeds as well as test questions.

The report's pooled comparisons resample the questions with the seeds held fixed: they say whether these trained
models differ, not whether another seed would repeat it. Training seeds and test questions are crossed random
factors (every seed's models answer every question), the design of Clark's "language-as-fixed-effect fallacy"
(1973), and the difference is read the way that literature does: the per-question, per-seed difference
``y[s, q]`` (a right minus b right, each question's samples averaged) is modelled as

    y[s, q] = δ + u[s] + v[q] + e[s, q],   u ~ (0, σ_u²), v ~ (0, σ_v²), e ~ (0, σ_e²)

whose grand mean has variance σ_u²/k + σ_v²/n + σ_e²/(kn) over k seeds and n questions. The test takes the seeds'
mean square plus the questions' over kn (the spread of the per-seed differences over k plus that of the per-question
ones over n, σ_e²/kn counted once more than the model has it), with Student's t on Satterthwaite's degrees of freedom.
The two-way ANOVA's mean squares also estimate the three components (each clamped at 0, the method of moments): what
the report shows, and what ``--plan`` sizes a study by. With 2-3 seeds the seed term has 1-2 degrees of freedom: the
interval is wide because the design is, and it assumes seed effects that are roughly normal. In simulation (two
models at ~9% on 1,596 questions, equal on average, the seed moving their difference by an sd of 0-4 points; 1,000
draws each) it rejected 0.6-7.2% of the time at 3 seeds and 0.9-5.7% at 5, but 1.9-11.0% at 2: with one degree of
freedom for the seeds Satterthwaite's t is liberal, and two seeds are read as a pointer, not a test. Testing the
questions alone, as the pooled rows do, rejected 37-66% of the time wherever the seed moved anything. No library
does this for a crossed design (statsmodels' meta-analysis takes the seeds as independent studies, which they are
not: they answer the same questions), hence the few lines here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Components:
    """The variance components of a per-question, per-seed difference (shares², 0-1 scale)."""

    seed: float  # σ_u²: how much the difference moves with the training seed alone
    question: float  # σ_v²: how much it moves from question to question, the same under every seed
    residual: float  # σ_e²: the rest (this seed on this question)

    def variance(self, k: int, n: int) -> tuple[float, float]:
        """(variance of the mean difference the test takes over k seeds and n questions, its Satterthwaite degrees
        of freedom), from the mean squares these components imply."""
        return _variance(n * self.seed + self.residual, self.question * k + self.residual, k, n)


def _variance(ms_seed: float, ms_question: float, k: int, n: int) -> tuple[float, float]:
    # (MS_seeds + MS_questions) / kn rather than the unbiased MS_s + MS_q − MS_e: with 3 seeds and 1,596 questions at
    # a 9% accuracy, the unbiased one, clamped, rejected a true null 7-8% of the time in simulation (seed sd 1-2
    # points); this one 1-7% (0-4 points)
    total = ms_seed + ms_question
    if total <= 0:
        return 0.0, math.inf
    return total / (k * n), total**2 / (ms_seed**2 / (k - 1) + ms_question**2 / (n - 1))


@dataclass(frozen=True)
class Crossed:
    """A difference with seeds and questions both random: estimate, interval, test and where its spread comes from."""

    seeds: int
    questions: int
    diff: float
    per_seed: tuple[float, ...]  # each seed's difference over the same questions
    ci95: tuple[float, float]
    df: float
    p: float
    components: Components
    p_holm: float | None = None


def crossed_difference(y: np.ndarray, alpha: float = ALPHA) -> Crossed:
    """``y``: seeds × questions, each cell a question's difference under one seed (a right − b right, its samples
    averaged). Two or more seeds and questions."""
    y = np.asarray(y, dtype=np.float64)
    k, n = y.shape
    if k < 2 or n < 2:
        raise ValueError(f"a crossed difference needs two or more seeds and questions, got {k} x {n}")
    grand = float(y.mean())
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    ms_seed = n * float(((rows - grand) ** 2).sum()) / (k - 1)
    ms_question = k * float(((cols - grand) ** 2).sum()) / (n - 1)
    resid = y - rows[:, None] - cols[None, :] + grand
    ms_resid = float((resid**2).sum()) / ((k - 1) * (n - 1))
    comp = Components(
        seed=max(0.0, (ms_seed - ms_resid) / n), question=max(0.0, (ms_question - ms_resid) / k), residual=ms_resid
    )
    var, df = _variance(ms_seed, ms_question, k, n)
    se = math.sqrt(var)
    if se == 0:
        ci, p = (grand, grand), (1.0 if grand == 0 else 0.0)
    else:
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
        ci, p = (grand - half, grand + half), float(2 * stats.t.sf(abs(grand) / se, df))
    return Crossed(k, n, grand, tuple(float(r) for r in rows), ci, df, p, comp)


def crossed_power(comp: Components, k: int, n: int, effect: float, alpha: float = ALPHA) -> float:
    """The power of the crossed t test to find ``effect`` (a share) with k seeds and n questions whose differences
    spread as ``comp`` measured (noncentral t on the Satterthwaite degrees of freedom)."""
    var, df = comp.variance(k, n)
    if k < 2 or var <= 0:
        return 0.0 if k < 2 else 1.0
    crit, ncp = float(stats.t.ppf(1 - alpha / 2, df)), abs(effect) / math.sqrt(var)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def seeds_needed(comp: Components, n: int, effect: float, power: float = 0.8, most: int = 100) -> int | None:
    """The fewest training seeds whose crossed test reaches ``power`` on ``effect`` with n questions; None when
    ``most`` seeds do not (the seed term alone keeps the mean from converging fast enough)."""
    return next((k for k in range(2, most + 1) if crossed_power(comp, k, n, effect) >= power), None)
