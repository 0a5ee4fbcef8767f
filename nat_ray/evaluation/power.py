"""Power of a paired comparison before the run: the smallest difference in accuracy a study can detect.

For two variants on the same n episodes, McNemar's test sees only the discordant pairs. With ψ the share of
discordant pairs and δ = P(a right, b wrong) − P(a wrong, b right) the true difference, the normal approximation
(Connor, 1987) gives the power at two-sided level α as

    Φ( (|δ|·√n − z_{α/2}·√ψ) / √(ψ − δ²) ),

and the minimum detectable difference is the smallest δ whose power reaches the target (80%). k samples per question
are counted as k·n pairs, which treats them as independent: an upper bound on the power when samples of a question
agree more often than pairs of questions do. ψ is an assumption unless a previous run measured it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# the quickstart's fine-tuned SmolLM2 variants disagreed on 42-55 of the same 100 StrategyQA questions (docs/results.md)
ASSUMED_DISCORDANT = 0.45
_N = NormalDist()


def mcnemar_power(n: int, discordant: float, diff: float, alpha: float = 0.05) -> float:
    """Power of the two-sided McNemar test on n pairs with discordant share ``discordant`` and difference ``diff``."""
    diff = abs(diff)
    if n <= 0 or discordant <= 0 or diff <= 0:
        return alpha if diff == 0 else 0.0
    if diff >= discordant:
        return 1.0
    z = _N.inv_cdf(1 - alpha / 2)
    return _N.cdf((diff * math.sqrt(n) - z * math.sqrt(discordant)) / math.sqrt(discordant - diff * diff))


def min_detectable_difference(n: int, discordant: float, power: float = 0.8, alpha: float = 0.05) -> float | None:
    """The smallest difference (a share, 0-1) detected with the given power; None when no possible one is (a
    difference cannot exceed the discordant share)."""
    lo, hi = 0.0, discordant
    if mcnemar_power(n, discordant, hi * (1 - 1e-9), alpha) < power:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if mcnemar_power(n, discordant, mid, alpha) >= power else (mid, hi)
    return hi
