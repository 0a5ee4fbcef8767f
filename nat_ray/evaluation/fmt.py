"""Number formats shared by the eval table, the skill table and the report (one place, so they never disagree)."""

from __future__ import annotations


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal; ``-`` where nothing was measured."""
    return "-" if x is None else f"{100 * x:.1f}"
