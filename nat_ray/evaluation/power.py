"""Power of a paired comparison before the run: the smallest difference in accuracy a study can detect.

For two variants on the same n episodes, McNemar's test sees only the discordant pairs. With ψ the share of
discordant pairs and δ = P(a right, b wrong) − P(a wrong, b right) the true difference, the number of discordant pairs
is D ~ Binomial(n, ψ), and of those a wins B ~ Binomial(D, (ψ + δ) / 2ψ). The power is the exact probability that
the test the report runs (compare.py: the two-sided binomial test of B against D/2) rejects at level α, summed over
D. Connor's normal approximation (1987), Φ((|δ|·√n − z_{α/2}·√ψ) / √(ψ − δ²)), agrees at large n and is far off at
small n or δ near ψ (n = 10, ψ = δ = 0.1: 0.156 against the exact 0.0001), which is why it is not used.

δ can never exceed ψ (every pair a wins is discordant): such an effect is impossible at that share, power 0, and the
plan says so. The minimum detectable difference is the smallest δ whose power reaches the target (80%). k samples
per question are counted as k·n pairs, which treats them as independent: an upper bound on the power when samples of
a question agree more often than pairs of questions do. ψ is an assumption unless a previous run measured it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# the quickstart's fine-tuned SmolLM2 variants disagreed on 42-55 of the same 100 StrategyQA questions (docs/results.md)
ASSUMED_DISCORDANT = 0.45
_TAIL_SDS = 10  # D outside mean ± 10 sd carries < 1e-20 of its mass


_log_fact = np.zeros(1)  # log k! for k = 0.., grown on demand


def _log_factorials(n: int) -> np.ndarray:
    global _log_fact
    if len(_log_fact) <= n:
        _log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 2 * n + 2, dtype=float)))])
    return _log_fact


def _log_pmf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    """log Binomial(n, p) pmf at k (p may be 0 or 1)."""
    lf = _log_factorials(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.where(k > 0, k * (math.log(p) if p > 0 else -np.inf), 0.0)
        misses = np.where(n - k > 0, (n - k) * (math.log1p(-p) if p < 1 else -np.inf), 0.0)
    return lf[n] - lf[k] - lf[n - k] + hits + misses


@functools.lru_cache(maxsize=1 << 16)
def _critical(d: int, alpha: float) -> int:
    """The largest c with the exact two-sided test rejecting at min(B, D − B) ≤ c on d discordant pairs; −1: none."""
    cdf = np.cumsum(np.exp(_log_pmf(np.arange(d // 2 + 1), d, 0.5)))
    return int(np.searchsorted(cdf, alpha / 2, side="right")) - 1  # 2 · P(B ≤ c) ≤ α, as mcnemar_exact computes


def possible(discordant: float, diff: float) -> bool:
    """Whether a difference can occur at a discordant share: |δ| ≤ ψ."""
    return abs(diff) <= discordant + 1e-12


def mcnemar_power(n: int, discordant: float, diff: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided exact McNemar test on n pairs with discordant share ``discordant`` and difference
    ``diff`` (at diff 0: its size, at most alpha); 0 for a difference that cannot occur at that share."""
    diff = abs(diff)
    if n <= 0 or discordant <= 0 or not possible(discordant, diff):
        return 0.0
    psi = min(discordant, 1.0)
    win = min(1.0, (psi + diff) / (2 * psi))
    sd = math.sqrt(n * psi * (1 - psi))
    lo, hi = max(0, math.floor(n * psi - _TAIL_SDS * sd) - 10), min(n, math.ceil(n * psi + _TAIL_SDS * sd) + 10)
    ds = np.arange(lo, hi + 1)
    weights = np.exp(_log_pmf(ds, n, psi))
    power = 0.0
    for d, w in zip(ds.tolist(), weights.tolist(), strict=True):
        c = _critical(d, alpha)
        if c < 0 or w < 1e-18:
            continue
        tails = np.concatenate([np.arange(c + 1), np.arange(d - c, d + 1)])  # B ≤ c or B ≥ d − c
        power += w * float(np.exp(_log_pmf(tails, d, win)).sum())
    return float(min(1.0, power))


def min_detectable_difference(n: int, discordant: float, power: float = 0.8, alpha: float = 0.05) -> float | None:
    """The smallest difference (a share, 0-1) detected with the given power; None when no possible one is (a
    difference cannot exceed the discordant share)."""
    lo, hi = 0.0, discordant
    if mcnemar_power(n, discordant, hi, alpha) < power:
        return None
    for _ in range(30):  # the discordant share / 2^30: far below the 0.1 points the plan prints
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if mcnemar_power(n, discordant, mid, alpha) >= power else (mid, hi)
    return hi
