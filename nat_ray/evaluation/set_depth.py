"""How deep a math training set's trajectories go: ``calculate`` actions per example, by label, with the share of
examples that call the calculator once and the share that finish.

Beside each model's depth at test time (the skill table's calls per episode) it says whether a variant took on its
set's depth: on issue 38's math study, the model's own failures called the calculator once in 24% of examples
against the gold solutions' 4%, and NUT trained on both answered 60% of test questions after one call (vanilla 36%).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.evaluation.fmt import pct
from nat_ray.react import parse_reply
from nat_ray.records import RunLayout
from nat_ray.storage import read_examples
from nat_ray.types import Example

SFT_MODES = ("vanilla", "nut", "nat", "nat-graded")  # sets of examples (DPO / KTO sets hold pairs)


def example_depth(example: Example) -> tuple[int, bool]:
    """(calculate actions, whether it finishes) over the example's trained (assistant) turns."""
    actions = [parse_reply(t.content) for t in example.messages if t.role == "assistant" and t.loss]
    kinds = [a.type for a in actions if a is not None]
    return kinds.count("calculate"), "finish" in kinds


def set_depth(examples: Iterable[Example]) -> dict[str, dict]:
    """{label: {"n", "calls_per_example", "one_call_share", "finished_share"}}, labels in first-seen order."""
    by: dict[str, list[tuple[int, bool]]] = {}
    for ex in examples:
        by.setdefault(ex.label, []).append(example_depth(ex))
    return {
        label: {
            "n": len(xs),
            "calls_per_example": sum(c for c, _ in xs) / len(xs),
            "one_call_share": sum(c == 1 for c, _ in xs) / len(xs),
            "finished_share": sum(f for _, f in xs) / len(xs),
        }
        for label, xs in by.items()
    }


def depth_rows(run: Path, variants: Sequence[dict], shown: Mapping[str, str] | None = None) -> list[str]:
    """One table row per label of each SFT variant's set in ``run`` (``shown``: a variant's row name, where it is
    not its folder's)."""
    lines = []
    for v in variants:
        name = (shown or {}).get(v["name"], v["name"])
        path = RunLayout(run).set_file(v["name"])
        if v.get("mode") not in SFT_MODES or not path.exists():
            continue
        try:
            depth = set_depth(read_examples(path))
        except InputError as exc:  # (a set that cannot be read is said, not skipped silently)
            lines.append(f"| {name} | not read: {exc} | | | | |")
            continue
        for label, x in depth.items():
            lines.append(f"| {name} | {label} | {x['n']} | {x['calls_per_example']:.2f} | "
                         f"{pct(x['one_call_share'])} | {pct(x['finished_share'])} |")  # fmt: skip
    return lines


def depth_table(run: Path, variants: Sequence[dict]) -> list[str]:
    """The report's section (none without an SFT set)."""
    return depth_section(depth_rows(run, variants))


def depth_section(lines: list[str]) -> list[str]:
    """The section around :func:`depth_rows`' rows (one run's or several)."""
    if not lines:
        return []
    head = [
        "| variant | label | examples | calls / example | one call (%) | finished (%) |",
        "|---|---|---|---|---|---|",
    ]
    return ["## Depth of the training sets (math)", "",
            "`calculate` actions per trained example, by label: what each variant was shown, beside the calls per "
            "episode its model made at test time (the skill table above).", "", *head, *lines, ""]  # fmt: skip
