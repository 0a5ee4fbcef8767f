"""``nat-ray verdict FILE --out DIR``: one family of comparisons over a study's variants under its training seeds,
wherever each variant's models lie — several run folders, one per seed, and variants from other studies beside them
(a control trained in a run of its own, say) — with the seeds random and Holm over every row of the family.

``pool-seeds`` reports the pairs a study implies, per run; ``compare --seed`` one pair. A verdict that names which of
several variants differ needs the pairs it asks about, across run folders, adjusted together: the file names them.

    runs: {42: runs/study-math-negatives, 43: runs/study-math-negatives-seed43}   # training seed: run folder
    variants:                       # name: its eval folder, {run} and {seed} filled in per seed
      vanilla: "{run}/eval/vanilla"
      gold500: "runs/study-math-gold500-seed{seed}/eval/vanilla"
    comparisons: [[nat, nut], [gold500, vanilla]]

A variant whose folder is missing under a seed is left out of that seed (said in the report); a comparison uses the
seeds both sides have — with one, it is tested on the questions alone and kept out of the seeds-random family.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from nat_ray.errors import InputError
from nat_ray.evaluation.compare import Comparison, with_crossed_holm, with_holm
from nat_ray.evaluation.fmt import pct
from nat_ray.evaluation.math_skill import is_math, math_skill, pooled_accuracy
from nat_ray.evaluation.report import _math_section, accuracy_table, seeds_table
from nat_ray.evaluation.report_paired import (
    CROSSED_TEXT,
    LOOPS_TEXT,
    PAIRED_TEXT,
    Episodes,
    add_pair,
    comparison_rows,
    comparisons_table,
    crossed_table,
)
from nat_ray.evaluation.report_plots import dev_perplexity
from nat_ray.records import COMPARISONS, METRICS, REPORT_README, EvalMetrics
from nat_ray.storage import atomic_file, read_record, write_json
from nat_ray.types import StrictModel

VERDICT_CONFIG = "verdict.json"


class VerdictConfig(StrictModel):
    """The verdict file: the seeds' run folders, the variants' eval folders, the comparisons to make."""

    title: str = "Verdict"
    runs: dict[int, str] = Field(min_length=1)  # training seed: run folder (``{run}`` in a variant's folder)
    variants: dict[str, str] = Field(min_length=2)  # name: eval folder with ``{run}`` and / or ``{seed}``
    comparisons: list[tuple[str, str]] = Field(min_length=1)  # (a, b): a − b
    base: str | None = None  # the untrained model's eval folder: the skill table's "base" column

    @model_validator(mode="after")
    def _known_names(self) -> VerdictConfig:
        for name, pattern in self.variants.items():
            if name == "base" or "-seed" in name:
                raise ValueError(f"variants.{name}: 'base' and names with '-seed' are the report's own rows")
            try:
                pattern.format(run="", seed=0)
            except (KeyError, IndexError, ValueError):
                raise ValueError(f"variants.{name}: {pattern!r}: only {{run}} and {{seed}} are filled in") from None
        for i, (a, b) in enumerate(self.comparisons):
            for name in (a, b):
                if name not in self.variants:
                    raise ValueError(f"comparisons[{i}]: {name!r} is not a variant ({', '.join(self.variants)})")
            if a == b:
                raise ValueError(f"comparisons[{i}]: {a!r} against itself")
        return self


def load_verdict(path: str | Path) -> VerdictConfig:
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"{path}{f':{mark.line + 1}' if mark else ''}: malformed YAML") from None
    try:
        return VerdictConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "".join(f"{p}: " for p in [".".join(str(x) for x in err["loc"])] if p)
        raise InputError(f"{path}: {where}{err['msg'].removeprefix('Value error, ')}") from None


def _folders(cfg: VerdictConfig, base: Path, path: str | Path) -> tuple[dict[str, Path], list[str]]:
    """{``<variant>-seed<N>``: eval folder} for every variant and seed whose folder holds an eval; the missing, said."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name, pattern in cfg.variants.items():
        for seed, run in cfg.runs.items():
            rel = pattern.format(run=run, seed=seed)
            if (base / rel / METRICS).is_file():
                found[f"{name}-seed{seed}"] = base / rel
            else:
                missing.append(f"{name} under seed {seed} ({rel}: no {METRICS})")
    if cfg.base is not None:
        if not (base / cfg.base / METRICS).is_file():
            raise InputError(f"{path}: base: {cfg.base}: no {METRICS} under {base.resolve()} (an eval's output folder)")
        found["base"] = base / cfg.base
    return found, missing


def _mean(skills: list[dict], key: str) -> float | None:
    xs = [s[key] for s in skills if s[key] is not None]
    return statistics.mean(xs) if xs else None


def _skill_over_seeds(cfg: VerdictConfig, episodes: Episodes, rows: dict[str, EvalMetrics]) -> str:
    """Per variant, over its seeds (mean): how it used the calculator on every math question, and its held-out
    perplexity where its run measured one."""
    lines = [
        "| variant | seeds | accuracy, pooled | loops | calls an episode | calculator valid | grounded operands "
        "| held-out perplexity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in [*cfg.variants, *(["base"] if "base" in rows else [])]:
        mine = [r for r in rows if r.rsplit("-seed", 1)[0] == name or r == name]
        skills, accs, ppls = [], [], []
        for row in mine:
            sets = [d for d in rows[row].datasets if is_math(d) and episodes.has(row, d)]
            if not sets:
                continue
            skills.append(math_skill([t for d in sets for t in episodes(row, d)]))
            cells = {d: rows[row].datasets[d] for d in sets}
            accs.append((pooled_accuracy(cells) or cells[sets[0]])["accuracy"])  # (one math set: its own)
            folder = episodes.folder(row)  # (a run's eval folder: <run>/eval/<variant>)
            ppl = dev_perplexity(folder.parents[1], folder.name) if len(folder.parents) > 1 else None
            ppls += [ppl] if ppl is not None else []
        if not skills:
            continue

        sd = f" ± {pct(statistics.stdev(accs))}" if len(accs) > 1 else ""
        calls = _mean(skills, "calls_per_episode")
        lines.append(
            f"| {name} | {len(skills)} | {pct(statistics.mean(accs))}{sd} | {pct(_mean(skills, 'loop_rate'))} | "
            f"{'-' if calls is None else f'{calls:.2f}'} | {pct(_mean(skills, 'calc_valid'))} | "
            f"{pct(_mean(skills, 'grounded_operands'))} | {f'{statistics.mean(ppls):.4f}' if ppls else '-'} |"
        )
    return "\n".join(lines)


def write_verdict(path: str | Path, out: str | Path, base: str | Path = ".") -> dict:
    """The verdict of the file ``path`` (folders relative to ``base``) into ``out``: README.md, comparisons.json and
    the validated file as ``verdict.json``."""
    cfg = load_verdict(path)
    folders, missing = _folders(cfg, Path(base), path)
    rows = {k: m for k, f in folders.items() if (m := read_record(f / METRICS, EvalMetrics)) is not None}
    if not any(k != "base" for k in rows):
        raise InputError(f"{path}: no eval found under {Path(base).resolve()} (the folders are relative to it): "
                         f"{'; '.join(missing[:3])}")  # fmt: skip
    episodes = Episodes(None, folders=folders)
    made: tuple[list[Comparison], list[Comparison], list[str]] = ([], [], [])
    for a, b in cfg.comparisons:
        seeds = [s for s in cfg.runs if f"{a}-seed{s}" in rows and f"{b}-seed{s}" in rows]
        if not seeds:
            made[2].append(f"{a} − {b}: no training seed has both evaluated")
            continue
        members = [(f"{a}-seed{s}", f"{b}-seed{s}") for s in seeds]
        sets = [set(rows[x].datasets) & set(rows[y].datasets) for x, y in members]
        add_pair(episodes, a, b, members, sorted(set.intersection(*sets)), made)
    paired = with_crossed_holm(with_holm(made[0]))
    loops = with_holm(made[1])
    one_seed = [c for c in paired if c.seeds == 1]
    alone = sorted({f"{c.a} − {c.b}" for c in one_seed})
    text = [
        f"# {cfg.title}",
        "",
        f"Made by `nat-ray verdict {path} --out {out}`. Training seeds: "
        + "; ".join(f"{s} (`{r}`)" for s, r in cfg.runs.items())
        + ". Rows are `<variant>-seed<N>`; each comparison pairs each seed's two models on the questions both ran.",
        "",
        *(["Not evaluated, so left out:", "", *[f"- {m}" for m in missing], ""] if missing else []),
        "## Accuracy",
        "",
        accuracy_table(rows),
        "",
        *(["## Over training seeds (mean ± standard deviation, %)", "", s, ""] if (s := seeds_table(rows)) else []),
        "## Skill over the seeds (every math question pooled; means over the seeds)",
        "",
        _skill_over_seeds(cfg, episodes, rows),
        "",
        "## The comparisons, seeds random (Holm over every row of this table)",
        "",
        CROSSED_TEXT,
        "",
        crossed_table(paired),
        "",
        *([f"(Under one seed only, so not in the table above: {', '.join(alone)}.)", ""] if alone else []),
        "## The same comparisons, the questions resampled (these models)",
        "",
        PAIRED_TEXT,
        "",
        comparisons_table(paired, made[2]),
        "",
        "## Loops, paired",
        "",
        LOOPS_TEXT,
        "",
        comparisons_table(loops, []),
        "",
        *_math_section(episodes, rows),
    ]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / REPORT_README) as tmp:
        tmp.write_text("\n".join(text) + "\n", encoding="utf-8")
    write_json(out / COMPARISONS, comparison_rows(paired, loops))
    write_json(out / VERDICT_CONFIG, cfg.model_dump(mode="json"))  # what was asked, beside the answer
    return {"rows": len(rows), "comparisons": len(paired), "seeds_random": len(paired) - len(one_seed),
            "missing": len(missing), "refused": len(made[2])}  # fmt: skip
