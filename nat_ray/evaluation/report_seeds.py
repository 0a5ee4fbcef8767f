"""``nat-ray pool-seeds RUN_DIR RUN_DIR… --out DIR``: one report over runs of the same study that differ in their
training seed (``train.seed``), each run its own pipeline run folder.

A study planned with seeds names them in one folder (``study.seeds`` -> ``nat-seed1``, ``nat-seed2``). A seed added to
a study that already ran cannot join its folder without renaming (and so retraining) every variant there; it runs as
its own folder instead (``out=… train.seed=43``), regenerating its negatives from its own vanilla model where the
study regenerates. This report joins them: every row is named ``<variant>-seed<N>``, and the report's own machinery
gives the per-seed rows, mean ± sd over the seeds, and each comparison per seed and pooled over the seeds (the
question the resampled unit, each seed's episodes paired with its own). The runs' reports (``report/run.json``, which
the pipeline writes) name their variants and seeds; the runs' configs are compared and every difference is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nat_ray.errors import InputError
from nat_ray.evaluation.compare import Comparison, unseeded, with_holm
from nat_ray.evaluation.report import _math_section, _skill_section, accuracy_table, seeds_table
from nat_ray.evaluation.report_paired import Episodes, add_pair, comparison_rows, comparisons_table, paired_section
from nat_ray.evaluation.report_plots import dev_perplexity
from nat_ray.evaluation.set_depth import depth_rows, depth_section
from nat_ray.records import (
    COMPARISONS,
    METRICS,
    POOLED_RUNS,
    REPORT_README,
    RUN_RECORD,
    TABLE,
    EvalMetrics,
    RunLayout,
    RunRecord,
)
from nat_ray.storage import read_record, write_json

# config keys that may differ between replications (where the run lies, which seed trained it)
EXPECTED = ("out", "train.seed")


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for k, v in config.items():
        out |= _flat(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def config_differences(configs: Sequence[dict | None]) -> list[str]:
    """The dotted keys whose value differs between the runs' configs, beyond where the run lies and its seed."""
    flats = [_flat(c or {}) for c in configs]
    keys = sorted(set().union(*flats))
    return [k for k in keys if k not in EXPECTED and len({repr(f.get(k)) for f in flats}) > 1]


def _seeded(name: str | None, seed: int) -> str | None:
    return None if name is None else f"{name}-seed{seed}"


def _renamed(v: dict, seed: int) -> dict:
    """A run's variant as the pooled report names it (its control's ``twin`` and a round's ``previous`` too)."""
    return v | {"name": _seeded(v["name"], seed), "twin": _seeded(v.get("twin"), seed),
                "previous": _seeded(v.get("previous"), seed), "train_seed": seed}  # fmt: skip


def gather(runs: Sequence[Path]) -> tuple[list[dict], dict[str, EvalMetrics], dict[str, Path], dict[str, Path], list]:
    """(variants, rows, eval folders, run folders, configs) of the runs, every name with its training seed."""
    if len(runs) < 2:
        raise InputError("pool-seeds: give two or more run folders (one per training seed)")
    variants: list[dict] = []
    rows: dict[str, EvalMetrics] = {}
    evals: dict[str, Path] = {}
    owners: dict[str, Path] = {}
    configs: list[dict | None] = []
    for run in runs:
        record = read_record(RunLayout(run).report / RUN_RECORD, RunRecord)
        if record is None or not record.variants:
            raise InputError(f"{run}: no report/{RUN_RECORD} naming its variants: not a pipeline run folder whose "
                             "report stage ran (run its pipeline to the end, or `nat-ray report` on it)")  # fmt: skip
        configs.append(record.config)
        for v in record.variants:
            seed = v.get("train_seed")
            if seed is None:
                raise InputError(f"{run}/report/{RUN_RECORD}: variant {v['name']!r} records no train_seed")
            if v["name"].endswith(f"-seed{seed}"):
                raise InputError(f"{run}: variant {v['name']!r} is already one of a seeds study's (study.seeds): "
                                 "its report pools its seeds itself")  # fmt: skip
            w = _renamed(v, int(seed))
            if w["name"] in owners:
                raise InputError(f"{run}: {v['name']!r} with training seed {seed} is also in {owners[w['name']]}: "
                                 "each run must train its own seed")  # fmt: skip
            owners[w["name"]] = run
            metrics = read_record(RunLayout(run).eval_dir(v["name"]) / METRICS, EvalMetrics)
            if metrics is not None:  # (a variant not evaluated yet is a variant, not a row)
                rows[w["name"]] = metrics
                evals[w["name"]] = RunLayout(run).eval_dir(v["name"])
            variants.append(w)
    return variants, rows, evals, owners, configs


def _perplexity_table(variants: list[dict], runs: dict[str, Path]) -> str | None:
    """Each row's held-out perplexity (``study.heldout``) where its run measured it."""
    cells = [(v["name"], dev_perplexity(runs[v["name"]], unseeded(v["name"]))) for v in variants]
    cells = [(n, p) for n, p in cells if p is not None]
    if not cells:
        return None
    return "\n".join(["| variant | held-out perplexity |", "|---|---|", *(f"| {n} | {p:.4f} |" for n, p in cells)])


SEED_TEXT = (
    "The same variant under two training seeds, paired as the comparisons above (Holm over these rows apart): what "
    "the seed alone moves. A comparison above whose difference is no larger than these is one the test questions "
    "separate but another seed may not repeat — their intervals resample the questions, not the training run."
)


def seed_comparisons(episodes: Episodes, variants: list[dict], rows: dict[str, EvalMetrics]) -> list[Comparison]:
    """Each variant's seeds against each other (every pair of them), on the data sets both rows share."""
    by: dict[str, list[str]] = {}
    for v in variants:
        if v["name"] in rows:
            by.setdefault(unseeded(v["name"]), []).append(v["name"])
    made: list[Comparison] = []
    for names in by.values():
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = sorted(set(rows[a].datasets) & set(rows[b].datasets))
                add_pair(episodes, a, b, [(a, b)], shared, (made, [], []))
    return with_holm(made)


def write_seeds_report(runs: Sequence[str | Path], out: str | Path) -> dict:
    """The pooled report of ``runs`` (one per training seed) into ``out``: README.md, table.md, comparisons.json."""
    paths = [Path(r) for r in runs]
    variants, rows, evals, owners, configs = gather(paths)
    study = list(dict.fromkeys(unseeded(v["name"]) for v in variants))  # the first run's order
    ordered = sorted(variants, key=lambda v: (study.index(unseeded(v["name"])), v["train_seed"]))
    rows = {v["name"]: rows[v["name"]] for v in ordered if v["name"] in rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    episodes = Episodes(None, folders=evals)
    table = accuracy_table(rows)
    (out / TABLE).write_text(table + "\n")
    paired, comparisons = paired_section(episodes, variants, rows)
    by_seed = seed_comparisons(episodes, ordered, rows)
    comparisons += [r | {"outcome": "seed"} for r in comparison_rows(by_seed, [])]
    write_json(out / COMPARISONS, comparisons)
    write_json(out / POOLED_RUNS, [str(p) for p in paths])  # (where `--plan-from` this folder reads eval rates)
    differ = config_differences(configs)
    seeds = seeds_table(rows)
    ppl = _perplexity_table(ordered, owners)
    depth: list[str] = []  # each seed's sets (regenerated negatives differ by seed: its own vanilla's failures)
    for run in paths:
        own = {unseeded(v["name"]): v for v in ordered if owners[v["name"]] == run}  # folder: row
        depth += depth_rows(run, [v | {"name": k} for k, v in own.items()], {k: v["name"] for k, v in own.items()})
    seed_text = ["## What the training seed alone moves", "", SEED_TEXT, "", comparisons_table(by_seed, []), ""]
    text = [
        f"# Report over training seeds: {', '.join(p.name for p in paths)}",
        "",
        "Each run trained its variants with one seed (`train.seed`); a row is `<variant>-seed<N>`. Cells: accuracy % "
        "with its 95% Wilson interval and the number of test episodes.",
        "",
        "Runs: "
        + "; ".join(f"`{p}`" for p in paths)
        + ". Their configs differ (beyond `out` and `train.seed`) in: "
        + (", ".join(f"`{k}`" for k in differ) if differ else "nothing")
        + ".",
        "",
        "## Accuracy",
        "",
        table,
        "",
        *(["## Over training seeds (mean ± standard deviation of accuracy, %)", "", seeds, ""] if seeds else []),
        *paired,
        *(seed_text if by_seed else []),
        *_skill_section(episodes, rows),
        *_math_section(episodes, rows),
        *depth_section(depth),
        *(["## Held-out perplexity", "", ppl, ""] if ppl else []),
    ]
    (out / REPORT_README).write_text("\n".join(text) + "\n")
    pooled = sum(1 for c in comparisons if c.get("seeds", 1) > 1 and c["outcome"] == "accuracy")
    return {"rows": len(rows), "comparisons": len(comparisons), "pooled": pooled, "config_differences": differ}
