"""The report's paired comparisons: every pair the study implies, on the episodes both rows ran, with a paired
bootstrap interval, the exact McNemar test and Holm's adjustment; the same pairs' loop rates apart; and the eval
episodes read once for these and for the skill sections (``report.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.evaluation.compare import (
    ALPHA,
    Comparison,
    compare,
    implied_pairs,
    pooled_over_seeds,
    reindexed,
    seed_matrix,
    verdict,
    with_crossed_holm,
    with_holm,
)
from nat_ray.evaluation.crossed import crossed_difference
from nat_ray.evaluation.math_skill import POOLED, is_math, looped
from nat_ray.records import EvalMetrics, RunLayout
from nat_ray.storage import read_trajectories
from nat_ray.types import Trajectory

PAIRED_TEXT = (
    "Each comparison on the episodes both rows ran (same question, same sample): the difference in accuracy with a "
    "95% paired bootstrap interval over the questions, the exact McNemar test on the discordant pairs (a only: a right "
    "and b wrong), and Holm's adjustment over every comparison below (`comparisons.json`)."
)
CROSSED_TEXT = (
    "The comparisons pooled over training seeds again, with the seeds random as well as the questions: would another "
    "seed repeat the difference? Each seed's difference on the same questions; the spread of the difference with the "
    "seed alone (its standard deviation, from the two-way ANOVA of seeds × questions); and a 95% interval and t test "
    "on Satterthwaite's degrees of freedom that count both (`nat_ray/evaluation/crossed.py`), Holm over these rows "
    "apart (`comparisons.json`, `crossed`). With few seeds the degrees of freedom are few and the interval wide; with "
    "two the test is liberal (about 10% at a nominal 5% in simulation), a pointer rather than a test."
)
LOOPS_TEXT = (
    "The same pairs on the share of episodes that loop (repeat a reply verbatim until the turn limit): the difference "
    "in points, a only: a loops and b does not; Holm over these rows apart from the accuracy's (`comparisons.json`, "
    '`"outcome": "loops"`).'
)


class Episodes:
    """Each eval folder's episodes, read once for both the paired comparisons and the skill table."""

    def __init__(self, run: Path | None, folders: dict[str, Path] | None = None) -> None:
        self.layout = RunLayout(run) if run is not None else None
        self.folders = folders or {}  # a row's eval folder where it is not the run's (``nat-ray compare``)
        self._read: dict[tuple[str, str], list[Trajectory]] = {}

    def folder(self, name: str) -> Path:
        return self.folders[name] if name in self.folders or self.layout is None else self.layout.eval_dir(name)

    def has(self, name: str, dataset: str) -> bool:
        return (self.folder(name) / dataset).is_dir()

    def __call__(self, name: str, dataset: str) -> list[Trajectory]:
        if (name, dataset) not in self._read:
            self._read[(name, dataset)] = read_trajectories(self.folder(name) / dataset)
        return self._read[(name, dataset)]


def _comparisons(
    episodes: Episodes, variants: list[dict], rows: dict[str, EvalMetrics]
) -> tuple[list[Comparison], list[Comparison], list[str]]:
    """Every comparison the study implies, on each data set both rows were evaluated on and, where they share two or
    more math sets, over those sets pooled (the paper's math verdict is over its four sets together), Holm-adjusted
    together; the same pairs' loop rates on math (pooled where there are two or more sets), Holm-adjusted apart; and
    the pairs refused for want of a shared question."""
    made: list[Comparison] = []
    loops: list[Comparison] = []
    refused: list[str] = []
    pairs = implied_pairs(variants, rows)
    groups = [((a, b), [(a, b)]) for a, b in pairs] + list(pooled_over_seeds(pairs, variants).items())
    for (a, b), members in groups:  # one pair, or the same pair over every training seed, pooled
        datasets = set.intersection(*(set(rows[x].datasets) & set(rows[y].datasets) for x, y in members))
        add_pair(episodes, a, b, members, sorted(datasets), (made, loops, refused))
    return with_crossed_holm(with_holm(made)), with_holm(loops), refused


def add_pair(
    episodes: Episodes,
    a: str,
    b: str,
    members: list[tuple[str, str]],
    datasets: list[str],
    out: tuple[list[Comparison], list[Comparison], list[str]],
) -> None:
    """One pair's comparisons (``members``: its rows, one per training seed) added to ``out`` (accuracy, loops,
    refused): on each data set, over the math sets pooled, and the loops on math."""
    made, loops, refused = out
    paired: dict[str, tuple[list[Trajectory], list[Trajectory]]] = {}
    by_seed: dict[str, Sides] = {}
    for d in datasets:
        if not all(episodes.has(x, d) and episodes.has(y, d) for x, y in members):
            continue
        try:  # (an eval folder whose episodes are gone cannot be paired: said, not guessed)
            by_seed[d] = ([episodes(x, d) for x, _ in members], [episodes(y, d) for _, y in members])
            paired[d] = _paired(a, b, by_seed[d], d, made)
        except InputError as exc:
            refused.append(str(exc))
    sets = [d for d in paired if is_math(d)]
    if len(sets) >= 2:  # a question is its set's: ids are made unique across the sets before pairing
        pooled = tuple([_set_ids(by_seed, sets, side, i) for i in range(len(members))] for side in (0, 1))
        paired[POOLED] = _paired(a, b, pooled, POOLED, made)
    for d in [POOLED] if len(sets) >= 2 else sets:  # the loops, paired as accuracy is
        ta, tb = paired[d]
        loops.append(dataclasses.replace(compare(a, _looped(ta), b, _looped(tb), d), seeds=len(members)))


# each side's episodes, one list per training seed: (a's, b's)
Sides = tuple[list[list[Trajectory]], list[list[Trajectory]]]


def _paired(
    a: str, b: str, sides: Sides, dataset: str, made: list[Comparison]
) -> tuple[list[Trajectory], list[Trajectory]]:
    """The comparison of ``sides`` on ``dataset`` added to ``made``, each seed's episodes pooled (their sample
    indexes moved apart); the pooled episodes back, for the loops."""
    ta = [t for i, seed in enumerate(sides[0]) for t in reindexed(seed, i)]
    tb = [t for i, seed in enumerate(sides[1]) for t in reindexed(seed, i)]
    made.append(_with_seeds(compare(a, ta, b, tb, dataset), sides))
    return ta, tb


def _set_ids(by_seed: dict[str, Sides], sets: list[str], side: int, seed: int) -> list[Trajectory]:
    """One seed's episodes of one side over the math ``sets``, each id made its set's."""
    return [t.model_copy(update={"id": f"{d}/{t.id}"}) for d in sets for t in by_seed[d][side][seed]]


def _with_seeds(c: Comparison, by_seed: Sides) -> Comparison:
    """A comparison with its number of seeds and, over two or more, its difference with the seeds random too."""
    seeds = len(by_seed[0])
    y = seed_matrix(*by_seed) if seeds > 1 else None
    crossed = crossed_difference(y) if y is not None and y.shape[1] >= 2 else None
    return dataclasses.replace(c, seeds=seeds, crossed=crossed)


def compare_evals(
    a: Path, b: Path, names: tuple[str, str], more: Sequence[tuple[Path, Path]] = ()
) -> tuple[list[Comparison], list[Comparison], list[str]]:
    """``nat-ray compare``: two eval folders (``<eval.out>``, one subfolder per data set) on the data sets every
    folder holds, paired as the report pairs its rows; accuracy and loops each Holm-adjusted over their rows.

    ``more``: the same two recipes under other training seeds, one pair of folders each (``--seed A B``), from any
    run folders — two studies' models, say: each pair is paired on its own questions, and the comparison is pooled
    over the pairs with the seeds random as well (``Comparison.crossed``), as ``pool-seeds`` pools a study's."""
    if names[0] == names[1]:
        raise InputError(f"nat-ray compare: both evals are named {names[0]!r}: name them apart (--names A B)")
    pairs = [(a, b), *more]
    folders = [f for pair in pairs for f in pair]
    sets = [sorted(p.name for p in f.iterdir() if p.is_dir()) if f.is_dir() else [] for f in folders]
    for folder, found in zip(folders, sets, strict=True):
        if not found:
            raise InputError(f"nat-ray compare: {folder} holds no eval (no data set folder)")
    shared = sorted(set.intersection(*map(set, sets)))
    if not shared:
        held = " and ".join(f"{f} ({', '.join(found)})" for f, found in zip(folders, sets, strict=True))
        raise InputError(f"nat-ray compare: {held} share no data set")
    # one key per folder: a pair's own names alone, or each seed's pair apart
    keys = [names] if not more else [(f"{names[0]}@{i}", f"{names[1]}@{i}") for i in range(len(pairs))]
    episodes = Episodes(None, dict(zip([k for pair in keys for k in pair], folders, strict=True)))
    out: tuple[list[Comparison], list[Comparison], list[str]] = ([], [], [])
    add_pair(episodes, *names, keys, shared, out)
    return with_crossed_holm(with_holm(out[0])), with_holm(out[1]), out[2]


def _looped(trajectories: list[Trajectory]) -> list[Trajectory]:
    """The episodes with whether they loop as their outcome, for the paired test of a behaviour."""
    return [t.model_copy(update={"reward": looped(t)}) for t in trajectories]


def comparisons_table(comparisons: list[Comparison], refused: list[str]) -> str:
    lines = [
        "| comparison | dataset | pairs | a only | b only | difference, points [95% CI] | McNemar p | Holm p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lo, hi = c.diff_ci95
        lines.append(
            f"| {c.label} | {c.dataset} | {c.n_pairs} | {c.a_only} | {c.b_only} | {100 * c.diff:+.1f} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {c.p_mcnemar:.2g} | {c.p_holm:.2g} |"
        )
    lines += ["", *[f"- {verdict(c)}" for c in comparisons]]
    left = [c for c in comparisons if c.left_out]
    lines += [f"- {c.a} vs {c.b} on {c.dataset}: {c.left_out} episode(s) without a match left out" for c in left]
    lines += [f"- refused: {why}" for why in refused]
    return "\n".join(lines)


def crossed_table(comparisons: list[Comparison]) -> str:
    """The comparisons with a crossed test (pooled over two or more seeds): per seed, the seed's spread, the
    interval with the seeds random, and whether another seed would likely repeat the sign."""
    lines = [
        "| comparison | dataset | seeds × questions | each seed, points | seed sd, points | difference, points "
        "[95% CI, seeds random] | df | p | Holm p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for c in comparisons:
        x = c.crossed
        if x is None:
            continue
        lo, hi = x.ci95
        p = x.p_holm if x.p_holm is not None else x.p
        each = ", ".join(f"{100 * d:+.1f}" for d in x.per_seed)
        lines.append(
            f"| {c.a} − {c.b} | {c.dataset} | {x.seeds} × {x.questions} | {each} | {100 * x.components.seed**0.5:.1f}"
            f" | {100 * x.diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {x.df:.1f} | {x.p:.2g} | {p:.2g} |"
        )
        held = p < ALPHA and (lo > 0 or hi < 0)
        verdicts.append(f"- {c.a} − {c.b} on {c.dataset}, seeds random: {100 * x.diff:+.1f} points "
                        f"[{100 * lo:+.1f}, {100 * hi:+.1f}], p = {p:.2g} — "
                        f"{'holds over seeds' if held else 'not shown to hold over seeds'}")  # fmt: skip
    return "\n".join([*lines, "", *verdicts])


def paired_section(
    episodes: Episodes, variants: list[dict], rows: dict[str, EvalMetrics]
) -> tuple[list[str], list[dict]]:
    """The report's paired sections (accuracy, then loops) and the rows of ``comparisons.json`` (each with its
    ``outcome``); no section when nothing could be paired or refused."""
    paired, loops, refused = _comparisons(episodes, variants, rows)
    text = ["## Paired comparisons", "", PAIRED_TEXT, "", comparisons_table(paired, refused), ""]
    text = text if paired or refused else []
    if any(c.crossed is not None for c in paired):
        text += ["### Over training seeds and questions", "", CROSSED_TEXT, "", crossed_table(paired), ""]
    if loops:
        text += ["### Loops, paired", "", LOOPS_TEXT, "", comparisons_table(loops, []), ""]
    return text, comparison_rows(paired, loops)


def comparison_rows(paired: list[Comparison], loops: list[Comparison]) -> list[dict]:
    """``comparisons.json``'s rows: each comparison with its ``outcome`` (accuracy, or the loops)."""
    return [c.row() | {"outcome": "accuracy"} for c in paired] + [c.row() | {"outcome": "loops"} for c in loops]
