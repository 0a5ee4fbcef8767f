"""Paired comparisons of evaluated variants: plain functions over their eval trajectories (no Ray).

Two variants evaluated on the same questions are compared on matched episodes — the same question ``id`` and the
same ``sample_index`` — leaving out a pair where either episode was lost to infrastructure (``label: error``). Per
comparison and data set:

- ``diff``: accuracy(a) − accuracy(b) over the matched episodes, each question's samples averaged first;
- ``diff_ci95``: a paired bootstrap interval (percentile, 10,000 resamples of the questions, seeded): the questions
  are the unit, so k samples of one question move together;
- ``a_only`` / ``b_only``: matched episodes a got right and b wrong, and the reverse; ``p_mcnemar``: the exact
  McNemar test on them (two-sided binomial); ``p_holm``: Holm's step-down adjustment over every comparison of a report.

Which pairs a study implies (:func:`implied_pairs`): each trained variant vs ``vanilla``, each NAT variant vs the NUT
variant with the same negatives, a variant on near-miss negatives vs the one on the model's own failures, a NAT
variant with a template of ``study.templates`` vs the default one, NAT vs each DPO / KTO variant of its training
seed, each compute-matched control vs its variant and the variants it is matched to, and every variant vs ``base``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from nat_ray.errors import InputError
from nat_ray.evaluation.crossed import Crossed
from nat_ray.evaluation.metrics import mcnemar_exact
from nat_ray.reformat import HINT_MODES
from nat_ray.types import Label, Trajectory

BOOTSTRAP = 10_000
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    dataset: str
    n_pairs: int
    n_questions: int
    left_out: int  # episodes of either variant with no match in the other (other questions or samples, or errors)
    a_only: int
    b_only: int
    diff: float
    diff_ci95: tuple[float, float]
    p_mcnemar: float
    p_holm: float | None = None
    seeds: int = 1  # > 1: the same pair over several training seeds, pooled
    crossed: Crossed | None = None  # with seeds > 1: the difference with the seeds random too (crossed.py)

    @property
    def label(self) -> str:
        return f"{self.a} − {self.b}" + (f" ({self.seeds} seeds pooled)" if self.seeds > 1 else "")

    def row(self) -> dict:
        row = asdict(self) | {"diff_ci95": list(self.diff_ci95)}
        if self.crossed is not None:  # (JSON: lists for tuples, as diff_ci95)
            row["crossed"] |= {"ci95": list(self.crossed.ci95), "per_seed": list(self.crossed.per_seed)}
        return row


def _outcomes(trajectories: Iterable[Trajectory]) -> dict[tuple[str, int], bool]:
    return {(t.id, t.sample_index): bool(t.reward) for t in trajectories if t.label != Label.ERROR}


def paired_bootstrap(
    per_question: Sequence[tuple[float, float]], n_boot: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of mean(a) − mean(b), resampling the questions (each a pair of its mean scores)."""
    n = len(per_question)
    if n == 0:
        return (0.0, 0.0)
    diffs = np.array([a - b for a, b in per_question], dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    stats = np.sort(diffs[picks].mean(axis=1))
    return (float(stats[int(0.025 * n_boot)]), float(stats[min(n_boot - 1, int(0.975 * n_boot))]))


def _question_means(
    oa: dict[tuple[str, int], bool], ob: dict[tuple[str, int], bool], keys: Iterable[tuple[str, int]]
) -> dict[str, tuple[float, float]]:
    """{question: (a's mean score, b's)} over its matched samples ``keys``, in the order the keys first name it."""
    by_question: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for key in keys:
        by_question[key[0]].append((oa[key], ob[key]))
    return {q: (sum(x for x, _ in v) / len(v), sum(y for _, y in v) / len(v)) for q, v in by_question.items()}


def compare(a_name: str, a: Iterable[Trajectory], b_name: str, b: Iterable[Trajectory], dataset: str) -> Comparison:
    """The paired comparison of two variants' episodes on one data set; refused when they share no question."""
    oa, ob = _outcomes(a), _outcomes(b)
    keys = sorted(oa.keys() & ob.keys())
    if not keys:
        raise InputError(f"{a_name} vs {b_name} on {dataset}: no question evaluated by both; nothing to pair")
    per_question = list(_question_means(oa, ob, keys).values())
    a_only = sum(oa[k] and not ob[k] for k in keys)
    b_only = sum(ob[k] and not oa[k] for k in keys)
    diff = sum(x - y for x, y in per_question) / len(per_question)
    return Comparison(
        a=a_name,
        b=b_name,
        dataset=dataset,
        n_pairs=len(keys),
        n_questions=len(per_question),
        left_out=len(oa) + len(ob) - 2 * len(keys),
        a_only=a_only,
        b_only=b_only,
        diff=diff,
        diff_ci95=paired_bootstrap(per_question),
        p_mcnemar=mcnemar_exact(a_only, b_only),
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


def with_holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    adjusted = holm([c.p_mcnemar for c in comparisons])
    return [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted, strict=True)]


def with_crossed_holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm's adjustment over the crossed tests (seeds random) of the comparisons that have one, apart from the
    McNemar tests' (the other rows are returned as they are)."""
    have = [i for i, c in enumerate(comparisons) if c.crossed is not None]
    adjusted = dict(zip(have, holm([comparisons[i].crossed.p for i in have]), strict=True))  # type: ignore[union-attr]
    return [
        replace(c, crossed=replace(c.crossed, p_holm=adjusted[i])) if i in adjusted else c  # type: ignore[arg-type]
        for i, c in enumerate(comparisons)
    ]


def seed_matrix(a: Sequence[Sequence[Trajectory]], b: Sequence[Sequence[Trajectory]]) -> np.ndarray:
    """Seeds × questions: under each seed (``a[i]`` against ``b[i]``), each question's difference (a right − b
    right over its matched samples), on the questions every seed's pair shares."""
    per_seed = []
    for ta, tb in zip(a, b, strict=True):
        oa, ob = _outcomes(ta), _outcomes(tb)
        per_seed.append({q: x - y for q, (x, y) in _question_means(oa, ob, oa.keys() & ob.keys()).items()})
    shared = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    return np.array([[s[q] for q in shared] for s in per_seed], dtype=np.float64).reshape(len(per_seed), len(shared))


def implied_pairs(variants: Sequence[dict], evaluated: Iterable[str]) -> list[tuple[str, str]]:
    """(a, b) for each comparison a study implies, among the rows that were evaluated. A compute-matched control
    (``twin`` set) is compared with its own variant (what the extra training alone did) and each variant of the same
    seed that it was matched to (what the negatives did at equal compute). A later round (``study.rounds``) is
    compared with its round before (what the round added) and with the vanilla model of its own round when vanilla is
    iterated too (else round 1's)."""
    have = set(evaluated)
    trained = [v for v in variants if v["name"] in have]
    own = [v for v in trained if not v.get("twin")]
    pairs: list[tuple[str, str]] = []
    for v in own:  # against the vanilla model of the same training seed (a seeds study has one per seed)
        vanillas = [w for w in own if w["mode"] == "vanilla" and w.get("train_seed") == v.get("train_seed")]
        if v.get("round", 1) == 1:  # and of the same positives (a learning curve trains several)
            vanillas = [w for w in vanillas if w.get("pos_num") == v.get("pos_num")] or vanillas
        twin = next((w for w in vanillas if w.get("round", 1) == v.get("round", 1)), None)
        twin = twin or next((w for w in vanillas if w.get("round", 1) == 1), None)
        if v["mode"] != "vanilla" and twin is not None:
            pairs.append((v["name"], twin["name"]))
    pairs += _curve_pairs(own)
    pairs += [(v["name"], v["previous"]) for v in own if v.get("previous") in have]
    for v in own:
        if v["mode"] == "nat":
            twin = next((w for w in own if w["mode"] == "nut" and _same_but_mode(v, w)), None)
            if twin is not None:
                pairs.append((v["name"], twin["name"]))
    for v in own:  # what the kind of negative did: near misses vs the model's own failures, all else equal
        if v.get("negative_source") == "near-miss":
            twin = _twin(v, own, ("pos_num", "neg_num", "train_seed", "template", "round"),
                         lambda w: w.get("negative_source") in ("regenerated", "imported"))  # fmt: skip
            pairs += [(v["name"], twin["name"])] if twin is not None else []
    for v in own:  # what the hints' wording did (study.templates): a NAT template vs the default, all else equal
        if v["mode"] in HINT_MODES and v.get("template") is not None:
            twin = _twin(v, own, ("pos_num", "neg_num", "train_seed", "negative_source", "round"),
                         lambda w: w.get("template") is None)  # fmt: skip
            pairs += [(v["name"], twin["name"])] if twin is not None else []
    for v in own:  # the other ways to learn from failure, against NAT of the same training seed
        if v["mode"] in ("dpo", "kto"):
            nat = next((w for w in own if w["mode"] == "nat" and w.get("train_seed") == v.get("train_seed")), None)
            if nat is not None:
                pairs.append((nat["name"], v["name"]))
    controls = [v for v in trained if v.get("twin")]
    controlled = {c["twin"] for c in controls}
    for c in controls:  # the variants that train the target: those without a control
        if c["twin"] in have:
            pairs.append((c["name"], c["twin"]))
        same_seed = [v for v in own if v.get("train_seed") == c.get("train_seed")]
        pairs += [(v["name"], c["name"]) for v in same_seed if v["name"] not in controlled]
    if "base" in have:
        pairs += [(v["name"], "base") for v in trained]
    return list(dict.fromkeys(pairs))


def pooled_over_seeds(
    pairs: Sequence[tuple[str, str]], variants: Sequence[dict]
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """{(a, b) named without their seed: the per-seed pairs} for comparisons a seeds study made for two or more
    seeds (``nat-seed1`` vs ``vanilla-seed1``, ``nat-seed2`` vs ``vanilla-seed2`` -> ``nat`` vs ``vanilla``)."""
    seeded = {v["name"]: v for v in variants if re.fullmatch(r".+-seed\d+", v["name"])}
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for a, b in pairs:
        if a in seeded and (b in seeded or b == "base"):
            groups[(unseeded(a), unseeded(b))].append((a, b))
    return {k: v for k, v in groups.items() if len(v) > 1}


def unseeded(name: str) -> str:
    """A seeds study's variant named without its training seed (``nat-seed1`` -> ``nat``)."""
    return re.sub(r"-seed\d+$", "", name)


def reindexed(trajectories: Iterable[Trajectory], seed_index: int) -> list[Trajectory]:
    """A seed's episodes with their sample index moved out of the others' way, for pooling: the question stays the
    resampled unit, and its episodes from every seed pair up seed by seed."""
    return [t.model_copy(update={"sample_index": seed_index * 1_000_000 + t.sample_index}) for t in trajectories]


def _curve_pairs(own: Sequence[dict]) -> list[tuple[str, str]]:
    """A learning curve (``study.positives``): each round-1 variant vs the one of the next smaller number of
    positives, all else equal (what more positives did)."""

    def size(v: dict) -> float:
        return float("inf") if v.get("pos_num") == "all" else v["pos_num"]

    sized = [v for v in own if v.get("pos_num") is not None]  # (run records written before the axis have none)
    pairs = []
    for v in sized:
        smaller = [
            w for w in sized if w.get("round", 1) == v.get("round", 1) == 1 and w["mode"] == v["mode"]
            and _same_but_mode(v, w, keys=("neg_num", "train_seed", "negative_source", "template"))
            and size(w) < size(v)
        ]  # fmt: skip
        if smaller:
            pairs.append((v["name"], max(smaller, key=size)["name"]))
    return pairs


_SAME = ("neg_num", "pos_num", "train_seed", "negative_source")


def _twin(v: dict, own: Sequence[dict], same: Sequence[str], differs: Callable[[dict], bool]) -> dict | None:
    """The variant of ``v``'s mode equal to it on ``same`` where ``differs`` holds: the one thing compared."""
    return next((w for w in own if w["mode"] == v["mode"] and differs(w) and _same_but_mode(v, w, same)), None)


def _same_but_mode(v: dict, w: dict, keys: Sequence[str] = _SAME) -> bool:
    return all(v.get(k) == w.get(k) for k in keys)


def verdict(c: Comparison) -> str:
    """One plain line: the difference in points, its interval, the test, and whether this n separates them."""
    lo, hi = c.diff_ci95
    p = c.p_holm if c.p_holm is not None else c.p_mcnemar
    separated = p < ALPHA and (lo > 0 or hi < 0)
    what = f"{c.label}: {100 * c.diff:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}], p = {p:.2g}"
    return f"{what} — {'separated' if separated else 'not separated at this n'}"
