"""``nat-ray pipeline --plan`` (and the first lines of every run): per comparison the study implies, the smallest
difference its test questions can detect, and what the eval will cost at the rates measured in this run folder (or
in the one ``--plan-from`` names: a finished run whose variants disagree as the planned study's will). Where that
folder's report pooled training seeds (a seeds study, or ``nat-ray pool-seeds``'s folder), the paper's effects are
also sized with the seed random: the power at the study's seeds and the seeds 80% needs (``crossed.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nat_ray.evaluation.compare import implied_pairs, unseeded
from nat_ray.evaluation.crossed import Components, crossed_power, seeds_needed
from nat_ray.evaluation.math_skill import POOLED, is_math
from nat_ray.evaluation.plan import questions_path
from nat_ray.evaluation.power import ASSUMED_DISCORDANT, mcnemar_power, min_detectable_difference, possible
from nat_ray.pipeline.cost_plan import cost_lines, source_runs
from nat_ray.records import COMPARISONS, METRICS, POOLED_RUNS, EvalMetrics, RunLayout
from nat_ray.storage import read_json_file, read_record
from nat_ray.tasks import get_task, load_questions_file

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan

# the paper's gains (Llama-2-7B), by task. StrategyQA: NAT over vanilla about 8 points, over NUT about 3. Math (the
# average over GSM8K, ASDiv, SVAMP and MultiArith, its Figure 2 at ~11k negatives): NAT about 65 against vanilla's 56,
# NUT 0.5-3 points below NAT (read from the paper's plot; issue 38)
STRATEGYQA_EFFECTS = {("nat", "vanilla"): 0.08, ("nat", "nut"): 0.03}
MATH_EFFECTS = {("nat", "vanilla"): 0.09, ("nat", "nut"): 0.03}


def paper_effects(task: str) -> dict[tuple[str, str], float]:
    """The paper's gains for a task's comparisons, by (mode, mode); none for a task it did not report so."""
    if task == "strategyqa":
        return STRATEGYQA_EFFECTS
    return MATH_EFFECTS if is_math(task) else {}


def _comparisons(out: Path) -> list[dict]:
    """A previous report's comparison rows in the run folder ``out`` or, for ``nat-ray pool-seeds``'s folder, in
    ``out`` itself (none without one)."""
    for path in (RunLayout(out).report / COMPARISONS, out / COMPARISONS):
        if path.exists():
            return read_json_file(path)
    return []


def plan_source(out: Path) -> bool:
    """Whether ``--plan-from`` can read ``out``: a run folder with a report, or a ``pool-seeds`` folder."""
    return RunLayout(out).report.is_dir() or (out / POOLED_RUNS).exists()


def measured_discordant(rows: list[dict], dataset: str | None = None) -> float | None:
    """The share of discordant pairs over a report's comparison ``rows``: over ``dataset``'s when given (None where
    the report has none of it), else over all."""
    # (a report's rows pooled over its math sets repeat their pairs: a share is taken over the sets' own rows)
    # (and the accuracy's: a report's loop rows pair the same episodes on another outcome)
    rows = [r for r in rows if r.get("dataset") != POOLED and dataset in (None, r.get("dataset"))]
    rows = [r for r in rows if r.get("outcome", "accuracy") == "accuracy"]
    pairs = sum(r["n_pairs"] for r in rows)
    return sum(r["a_only"] + r["b_only"] for r in rows) / pairs if pairs else None


def discordant_share(rows: list[dict], dataset: str, folder: str) -> tuple[float, str]:
    """The discordant share the plan takes for ``dataset`` and where it comes from: the data set's own in the report
    ``rows`` (``folder``'s), else the report's over its other data sets, else ``ASSUMED_DISCORDANT``."""
    own = measured_discordant(rows, dataset)
    if own is not None:
        return own, f"measured on {dataset} by {folder} last report"
    other = measured_discordant(rows)
    if other is not None:
        return other, f"measured on other data sets by {folder} last report"
    return ASSUMED_DISCORDANT, "assumed"


def measured_rate(out: Path) -> float | None:
    """Eval episodes per second over the evals this run folder already ran (a ``pool-seeds`` folder: its runs')."""
    episodes = seconds = 0.0
    for run in source_runs(out):
        evals = RunLayout(run).evals
        for folder in sorted(evals.iterdir()) if evals.is_dir() else []:
            m = read_record(folder / METRICS, EvalMetrics)
            if m is not None and m.run.get("episodes_run") and m.run.get("seconds"):
                episodes, seconds = episodes + m.run["episodes_run"], seconds + m.run["seconds"]
    return episodes / seconds if seconds else None


def _power_of(n: int, psi: float, effects: dict[tuple[str, str], float]) -> str:
    return ", ".join(
        f"the paper's +{100 * e:.0f} power {mcnemar_power(n, psi, e):.0%}"
        if possible(psi, e)
        else f"the paper's +{100 * e:.0f} impossible at this share"
        for e in sorted(set(effects.values()), reverse=True)
    )


def _pooled_line(
    what: str, pooled: int, psi: float, effects: dict[tuple[str, str], float], note: str, indent: str = "  "
) -> str:
    mde = min_detectable_difference(pooled, psi)
    line = f"plan: {indent}pooled over {what}: {pooled:,} pairs, discordant share {psi:.2f}; detectable: "
    line += f"{100 * mde:.1f} points" if mde is not None else "no difference at this n"
    return line + (f"; {_power_of(pooled, psi, effects)}" if effects else "") + note


# with several training seeds the report also pools each comparison over them. Optimistic: a question's pairs under
# two seeds are not independent draws (the seeds' models share the training set)
_SEEDS_NOTE = " (an upper bound: pairs of one question under two seeds are not independent)"


def plan_lines(plan: PipelinePlan, source: Path | None = None) -> list[str]:
    """The plan; ``source``: the run folder whose last report and evals give the discordant shares and the eval
    rate (default: the plan's own)."""
    cfg, ec = plan.cfg, plan.eval
    source = Path(plan.out) if source is None else Path(source)
    own_folder = source == Path(plan.out)
    report = _comparisons(source)  # read once: every data set's share comes from it
    folder = "this run folder's" if own_folder else f"{source}'s"
    variants = [v.__dict__ for v in plan.variants if not v.control]  # controls are kept once the sets are built
    base = cfg.study is None or cfg.study.base
    rows = [*(["base"] if base else []), *(v["name"] for v in variants)]
    mode = {"base": "base", **{v["name"]: v["mode"] for v in variants}}
    pairs = implied_pairs(variants, rows)
    seeds = cfg.study.seeds if cfg.study and cfg.study.seeds and len(cfg.study.seeds) > 1 else None
    lines, episodes, sizes = [], 0, []
    for dataset in ec.datasets:
        task = get_task(dataset)
        questions = len(load_questions_file(task, questions_path(cfg, dataset)[0])[ec.offset :])
        questions = min(questions, ec.limit) if ec.limit is not None else questions
        n = questions * ec.samples
        episodes += n * len(rows)
        psi, where = discordant_share(report, task.name, folder)
        sizes.append((task.name, n, psi))
        mde = min_detectable_difference(n, psi)
        detectable = f"{100 * mde:.1f} points" if mde is not None else "no difference at this n"
        lines.append(
            f"plan: {task.name}: {questions} questions x {ec.samples} sample(s) = {n} pairs per comparison; "
            f"discordant share {psi:.2f} ({where}); detectable at 80% power, alpha 0.05: {detectable}"
        )
        effects = paper_effects(task.name)
        paper = [(a, b) for a, b in pairs if (mode[a], mode[b]) in effects]
        lines += _paper_lines(paper, mode, effects, n, psi)
        lines += _seed_lines(report, task.name, paper, mode, effects, (questions, len(seeds or [0]), folder))
        if seeds:
            lines.append(_pooled_line(f"{len(seeds)} training seeds", n * len(seeds), psi, effects, _SEEDS_NOTE))
    lines += _pooled_over_datasets(sizes, seeds)
    if len(sizes) >= 2 and all(is_math(name) for name, _, _ in sizes):
        paper = [(a, b) for a, b in pairs if (mode[a], mode[b]) in MATH_EFFECTS]
        questions = sum(k for _, k, _ in sizes) // ec.samples
        lines += _seed_lines(report, POOLED, paper, mode, MATH_EFFECTS, (questions, len(seeds or [0]), folder))
    rate = measured_rate(source)
    where = "here" if own_folder else f"in {source}"
    cost = f"~{episodes / rate / 60:.0f} min at the {rate:.2f} episodes/s measured {where}" if rate else ""
    lines.append(f"plan: {len(pairs)} comparison(s); eval {episodes:,} episodes ({cost or 'no rate measured'})")
    lines += cost_lines(plan, source, where, (episodes / len(rows) / rate, episodes / rate) if rate else None)
    if cfg.study and cfg.study.controls:
        lines.append(f"plan: and study.controls {', '.join(cfg.study.controls)}: one more trained model and eval per "
                     "variant that trains less than the target (decided once the sets are built)")  # fmt: skip
    return lines


def _by_modes(pairs: list[tuple[str, str]], mode: dict[str, str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The pairs grouped by their two modes (one paper effect each), in the order first seen."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in pairs:
        groups.setdefault((mode[a], mode[b]), []).append((a, b))
    return groups


def _paper_lines(
    pairs: list[tuple[str, str]], mode: dict[str, str], effects: dict[tuple[str, str], float], n: int, psi: float
) -> list[str]:
    """Per paper effect, whether its comparisons can detect it: one line for all pairs of the same two modes (their
    power is one figure: the same n, share and effect), naming the first."""
    lines = []
    for key, members in _by_modes(pairs, mode).items():
        effect, (a, b) = effects[key], members[0]
        name = f"{a} - {b}" + (f" (and {len(members) - 1} more {key[0]} - {key[1]})" if len(members) > 1 else "")
        if not possible(psi, effect):
            lines.append(f"plan:   {name}: the paper's +{100 * effect:.0f} points is impossible at a discordant share "
                         f"of {psi:.2f} (a difference cannot exceed it)")  # fmt: skip
            continue
        power = mcnemar_power(n, psi, effect)
        verdict = "can detect it" if power >= 0.8 else "cannot detect it: more questions or samples"
        lines.append(f"plan:   {name}: the paper's +{100 * effect:.0f} points has power {power:.0%}: {verdict}")
    return lines


def _pooled_over_datasets(sizes: list[tuple[str, int, float]], seeds: list[int] | None) -> list[str]:
    """The paper's math verdict is the average over its four sets: one comparison pooled over the study's data sets
    (each question one pair; the pooled share weighs each set's by its pairs), when they share the paper's effects."""
    if len(sizes) < 2:
        return []
    effects = paper_effects(sizes[0][0])
    if any(paper_effects(name) != effects for name, _, _ in sizes):
        effects = {}
    n = sum(k for _, k, _ in sizes)
    psi = sum(k * share for _, k, share in sizes) / n
    what = f"the {len(sizes)} data sets"
    lines = [_pooled_line(what, n, psi, effects, "", indent="")]
    if seeds:
        seeded = f"{what} and {len(seeds)} training seeds"
        lines.append(_pooled_line(seeded, n * len(seeds), psi, effects, _SEEDS_NOTE, indent=""))
    return lines


def _seed_lines(
    report: list[dict],
    dataset: str,
    pairs: list[tuple[str, str]],
    mode: dict[str, str],
    effects: dict[tuple[str, str], float],
    size: tuple[int, int, str],
) -> list[str]:
    """Per paper effect, its power with the training seed random as well (``size``: the questions, the study's
    seeds, the folder that measured the spread), where the plan's report pooled seeds on ``dataset``."""
    questions, seeds, folder = size
    measured = [r for r in report if r.get("dataset") == dataset and r.get("crossed") and
                r.get("outcome", "accuracy") == "accuracy"]  # fmt: skip
    if not measured:
        return []
    # a pair's own seed variance rests on its few seeds (1 degree of freedom at 2): the plan takes the mean over
    # every pooled comparison of the data set instead, the pair's own shown beside it
    seed = sum(r["crossed"]["components"]["seed"] for r in measured) / len(measured)
    lines = []
    for (ma, mb), members in _by_modes(pairs, mode).items():  # every pair of two modes shares the seed variance
        named = {(unseeded(a), unseeded(b)) for a, b in members}  # (a seeds study's rows are pooled unseeded)
        own = next((r for r in measured if (r["a"], r["b"]) in named), None)
        comp = Components(**(own or measured[0])["crossed"]["components"])
        comp = Components(seed=seed, question=comp.question, residual=comp.residual)
        mine = f"; {own['a']} - {own['b']}'s own {100 * own['crossed']['components']['seed'] ** 0.5:.1f}" if own else ""
        effect = effects[(ma, mb)]
        need = seeds_needed(comp, questions, effect)
        powers = ", ".join(
            f"{crossed_power(comp, k, questions, effect):.0%} at {k}" for k in sorted({2, 3, 5, seeds}) if k > 1
        )
        lines.append(
            f"plan:   {ma} - {mb} on {dataset}, seeds random (seed sd {100 * seed**0.5:.1f} points: the mean seed "
            f"variance of the {len(measured)} pooled comparisons of {folder} report{mine}): the paper's "
            f"+{100 * effect:.0f} has power {powers} seeds; 80% needs " + (f"{need} seeds" if need else "more than 100")
        )
    return lines
