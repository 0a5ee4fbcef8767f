"""``nat-ray pipeline --plan`` (and the first lines of every run): per comparison the study implies, the smallest
difference its test questions can detect, and what the eval will cost at the rates measured in this run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nat_ray.evaluation.compare import implied_pairs
from nat_ray.evaluation.plan import questions_path
from nat_ray.evaluation.power import ASSUMED_DISCORDANT, mcnemar_power, min_detectable_difference, possible
from nat_ray.records import COMPARISONS, METRICS, EvalMetrics, RunLayout
from nat_ray.storage import read_json_file, read_record
from nat_ray.tasks import get_task, load_questions_file

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan

# the paper's StrategyQA gains (Llama-2-7B): NAT over vanilla about 8 points, over NUT about 3
PAPER_EFFECTS = {("nat", "vanilla"): 0.08, ("nat", "nut"): 0.03}


def measured_discordant(out: Path) -> float | None:
    """The share of discordant pairs over a previous report's comparisons in this run folder, if there is one."""
    path = RunLayout(out).report / COMPARISONS
    rows = read_json_file(path) if path.exists() else []
    pairs = sum(r["n_pairs"] for r in rows)
    return sum(r["a_only"] + r["b_only"] for r in rows) / pairs if pairs else None


def measured_rate(out: Path) -> float | None:
    """Eval episodes per second over the evals this run folder already ran."""
    episodes = seconds = 0.0
    evals = RunLayout(out).evals
    for folder in sorted(evals.iterdir()) if evals.is_dir() else []:
        m = read_record(folder / METRICS, EvalMetrics)
        if m is not None and m.run.get("episodes_run") and m.run.get("seconds"):
            episodes, seconds = episodes + m.run["episodes_run"], seconds + m.run["seconds"]
    return episodes / seconds if seconds else None


def _pooled_line(seeds: list[int] | None, n: int, psi: float, paper: bool) -> list[str]:
    """With several training seeds the report also pools each comparison over them: its power. Optimistic: a
    question's pairs under two seeds are not independent draws (the seeds' models share the training set)."""
    if not seeds or len(seeds) < 2:
        return []
    pooled = n * len(seeds)
    mde = min_detectable_difference(pooled, psi)
    line = f"plan:   pooled over {len(seeds)} training seeds: {pooled} pairs; detectable: "
    line += f"{100 * mde:.1f} points" if mde is not None else "no difference at this n"
    if paper:
        line += "; " + ", ".join(
            f"the paper's +{100 * e:.0f} power {mcnemar_power(pooled, psi, e):.0%}"
            if possible(psi, e)
            else f"the paper's +{100 * e:.0f} impossible at this share"
            for e in sorted(set(PAPER_EFFECTS.values()), reverse=True)
        )
    return [line + " (an upper bound: pairs of one question under two seeds are not independent)"]


def plan_lines(plan: PipelinePlan) -> list[str]:
    cfg, ec = plan.cfg, plan.eval
    variants = [v.__dict__ for v in plan.variants if not v.control]  # controls are kept once the sets are built
    base = cfg.study is None or cfg.study.base
    rows = [*(["base"] if base else []), *(v["name"] for v in variants)]
    mode = {"base": "base", **{v["name"]: v["mode"] for v in variants}}
    pairs = implied_pairs(variants, rows)
    measured = measured_discordant(plan.out)
    psi = measured if measured is not None else ASSUMED_DISCORDANT
    where = "measured by this run folder's last report" if measured is not None else "assumed"
    lines, episodes = [], 0
    for dataset in ec.datasets:
        task = get_task(dataset)
        questions = len(load_questions_file(task, questions_path(cfg, dataset)[0])[ec.offset :])
        questions = min(questions, ec.limit) if ec.limit is not None else questions
        n = questions * ec.samples
        episodes += n * len(rows)
        mde = min_detectable_difference(n, psi)
        detectable = f"{100 * mde:.1f} points" if mde is not None else "no difference at this n"
        lines.append(
            f"plan: {task.name}: {questions} questions x {ec.samples} sample(s) = {n} pairs per comparison; "
            f"discordant share {psi:.2f} ({where}); detectable at 80% power, alpha 0.05: {detectable}"
        )
        for a, b in pairs:
            effect = PAPER_EFFECTS.get((mode[a], mode[b])) if task.name == "strategyqa" else None
            if effect is None:
                continue
            if not possible(psi, effect):
                lines.append(f"plan:   {a} - {b}: the paper's +{100 * effect:.0f} points is impossible at a discordant "
                             f"share of {psi:.2f} (a difference cannot exceed it)")  # fmt: skip
                continue
            power = mcnemar_power(n, psi, effect)
            verdict = "can detect it" if power >= 0.8 else "cannot detect it: more questions or samples"
            lines.append(f"plan:   {a} - {b}: the paper's +{100 * effect:.0f} points has power {power:.0%}: {verdict}")
        lines += _pooled_line(cfg.study.seeds if cfg.study else None, n, psi, task.name == "strategyqa")
    rate = measured_rate(plan.out)
    cost = f"~{episodes / rate / 60:.0f} min at the {rate:.2f} episodes/s measured here" if rate else "no rate measured"
    lines.append(f"plan: {len(pairs)} comparison(s); eval {episodes:,} episodes ({cost})")
    if cfg.study and cfg.study.controls:
        lines.append(f"plan: and study.controls {', '.join(cfg.study.controls)}: one more trained model and eval per "
                     "variant that trains less than the target (decided once the sets are built)")  # fmt: skip
    return lines
