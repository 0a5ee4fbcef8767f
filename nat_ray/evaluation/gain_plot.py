"""NUT's and NAT's gain over vanilla against the number of negatives per positive, paired, from one or more run
folders' reports, beside the paper's math result (its Figure 2). Gains, not accuracies: a 135M model on CPU and
Llama-2-7B share no accuracy scale, but "how many points do the failures add to the same positives, as they grow"
is the paper's question on either. Runs are joined because a session-sized sweep is several runs (the session
study's 0.5x point and the negatives study's 1x and 4x), each paired with its own vanilla on the same questions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nat_ray.evaluation.math_skill import POOLED
from nat_ray.records import COMPARISONS, RUN_RECORD, RunLayout
from nat_ray.storage import read_json_file

# read from the paper's Figure 2 (math: the average over GSM8K, ASDiv, SVAMP and MultiArith, Llama-2-7B, 2,000
# positives): vanilla about 56, NAT about 65 at ~11k negatives, NUT 0.5-3 points below NAT (issue 38). Only the
# ends are drawn: the points between are not read off the figure here.
PAPER_POSITIVES = 2000
PAPER_NEGATIVES = 11000
PAPER_NAT_GAIN = 9.0
PAPER_NUT_GAIN = (6.0, 8.5)
SWEPT_MODES = ("nut", "nat")


@dataclass(frozen=True)
class GainPoint:
    run: str
    variant: str
    label: str  # mode and negative source: one line each
    ratio: float  # negatives per positive
    gain: float  # points over vanilla, paired
    ci95: tuple[float, float]
    n_pairs: int


def gain_points(run: Path) -> list[GainPoint]:
    """Each default-template, first-round NUT / NAT variant's paired gain over the vanilla of its positives and seed,
    over the math sets pooled (else over the report's one data set); none without a report."""
    path = RunLayout(run).report / COMPARISONS
    meta = RunLayout(run).report / RUN_RECORD
    if not (path.exists() and meta.exists()):
        return []
    rows = [r for r in read_json_file(path) if r.get("outcome", "accuracy") == "accuracy"]
    datasets = {r["dataset"] for r in rows}
    dataset = POOLED if POOLED in datasets else next(iter(datasets)) if len(datasets) == 1 else None
    variants = {v["name"]: v for v in read_json_file(meta).get("variants", [])}
    points = []
    for r in rows:
        a, b = variants.get(r["a"]), variants.get(r["b"])
        if r["dataset"] != dataset or a is None or b is None or b["mode"] != "vanilla" or b.get("twin"):
            continue
        if a["mode"] not in SWEPT_MODES or a.get("twin") or a.get("template") or a.get("round", 1) != 1:
            continue
        if not (isinstance(a["neg_num"], int) and isinstance(a["pos_num"], int) and a["pos_num"] > 0):
            continue
        if (a["pos_num"], a["train_seed"]) != (b["pos_num"], b["train_seed"]):
            continue
        source = a.get("negative_source") or "imported"
        label = a["mode"].upper() + ("" if source == "imported" else f" ({source})")
        low, high = r["diff_ci95"]
        ratio, gain = a["neg_num"] / a["pos_num"], 100 * r["diff"]
        points.append(GainPoint(run.name, a["name"], label, ratio, gain, (100 * low, 100 * high), r["n_pairs"]))
    return points


def plot_gain_vs_negatives(runs: list[Path], path: Path, paper: bool = True) -> list[GainPoint]:
    """Draw the runs' gains (95% paired intervals) at their negatives-per-positive ratios, one line per mode and
    source, with the paper's ends beside them when ``paper``; nothing is drawn (an empty list back) unless the
    points span at least two ratios."""
    points = [p for run in runs for p in gain_points(run)]
    if len({p.ratio for p in points}) < 2:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ours, theirs) = plt.subplots(1, 2, figsize=(10, 4), sharex=False)
    for label in dict.fromkeys(p.label for p in points):
        pts = sorted((p for p in points if p.label == label), key=lambda p: p.ratio)
        x = [0.0] + [p.ratio for p in pts]  # vanilla: no negatives, no gain
        y = [0.0] + [p.gain for p in pts]
        err = [[0.0] + [p.gain - p.ci95[0] for p in pts], [0.0] + [p.ci95[1] - p.gain for p in pts]]
        ours.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ours.axhline(0, color="grey", linewidth=1, linestyle="--")
    ours.set(xlabel="negatives per positive", ylabel="gain over vanilla, points (paired 95% CI)",
             title=f"Here: {', '.join(dict.fromkeys(p.run for p in points))}")  # fmt: skip
    ours.legend(fontsize=7)
    if paper:
        end = PAPER_NEGATIVES / PAPER_POSITIVES
        theirs.plot([0, end], [0, PAPER_NAT_GAIN], marker="o", label="NAT (ends read from the figure)")
        theirs.errorbar([end], [sum(PAPER_NUT_GAIN) / 2], yerr=[[1.25], [1.25]], marker="s", capsize=3,
                        linestyle="", label="NUT (0.5-3 below NAT)")  # fmt: skip
        theirs.axhline(0, color="grey", linewidth=1, linestyle="--")
        theirs.set(xlabel="negatives per positive", ylabel="gain over vanilla, points",
                   title="The paper, math (Llama-2-7B, 2,000 positives)")  # fmt: skip
        theirs.legend(fontsize=7)
    else:
        theirs.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return points
