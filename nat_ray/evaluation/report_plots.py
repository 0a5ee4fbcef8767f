"""The report's PNG plots: training loss of every variant, accuracy and held-out perplexity vs the number of negatives
per mode (the paper's Figures 2 and 4) when a run varies the negatives, accuracy and action-error rate per round when
it iterates (``study.rounds``), accuracy vs the number of positives when it is a learning curve
(``study.positives``)."""

from __future__ import annotations

import re
from pathlib import Path

from nat_ray.records import (
    ACCURACY_PLOT,
    CURVE_PLOT,
    LOSS_PLOT,
    PERPLEXITY_PLOT,
    ROUNDS_PLOT,
    TRAIN_LOG,
    TRAIN_RECORD,
    EvalMetrics,
    RunLayout,
    TrainingRecord,
    read_stage,
)
from nat_ray.storage import dataset_manifest, read_record, read_records


def dev_perplexity(run: Path, name: str) -> float | None:
    """The model's held-out perplexity: on the run's held-out gold trajectories (``study.heldout``), else on the
    ``train.dev`` set its training measured."""
    stage = read_stage(RunLayout(run).heldout_dir(name))
    if stage is not None and stage.complete and stage.counts.get("perplexity") is not None:
        return float(stage.counts["perplexity"])
    record = read_record(RunLayout(run).model(name) / TRAIN_RECORD, TrainingRecord)
    return record.dev_perplexity if record is not None else None


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> str:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _errorbar(ax, points: list[tuple[int, dict]], marker: str, label: str) -> None:  # type: ignore[no-untyped-def]
    """Accuracy % at each number of negatives, with its 95% interval as the error bar."""
    acc = [100 * (x["accuracy"] or 0) for _, x in points]
    low = [a - 100 * x["accuracy_ci95"][0] for a, (_, x) in zip(acc, points, strict=True)]
    high = [100 * x["accuracy_ci95"][1] - a for a, (_, x) in zip(acc, points, strict=True)]
    ax.errorbar([n for n, _ in points], acc, yerr=[low, high], marker=marker, capsize=3, label=label)


def plots(run: Path, rows: dict[str, EvalMetrics], variants: list[dict], report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = 0
    for v in variants:
        path = RunLayout(run).model(v["name"]) / TRAIN_LOG
        if path.exists():
            points = [row for _, row in read_records(path)]
            points = [p for p in points if p.get("loss") is not None]
            if points:
                ax.plot([p["step"] for p in points], [p["loss"] for p in points], marker="o", label=v["name"])
                curves += 1
    if curves:
        made.append(
            _save(fig, ax, report / LOSS_PLOT, "optimizer step", "training loss (assistant tokens)", "Training loss")
        )
    plt.close(fig)

    by_mode: dict[str, list[tuple[int, EvalMetrics, float | None]]] = {}
    for v in variants:
        if v["mode"] != "vanilla" and isinstance(v["neg_num"], int) and v["name"] in rows:
            source = v.get("negative_source") or "imported"
            key = v["mode"] + (f" ({source})" if source != "imported" else "")
            by_mode.setdefault(key, []).append((v["neg_num"], rows[v["name"]], dev_perplexity(run, v["name"])))
    if any(len({n for n, _, _ in pts}) > 1 for pts in by_mode.values()):
        datasets = list(next(iter(rows.values())).datasets)
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode, pts in by_mode.items():
            for d in datasets:
                pts_d = sorted((n, m.datasets[d]) for n, m, _ in pts if d in m.datasets)
                _errorbar(ax, pts_d, "o", f"{mode} {d}")
        for v in variants:  # vanilla: the positives alone, the sweep's point at 0 negatives
            for d in datasets if v["mode"] == "vanilla" else []:
                x = rows[v["name"]].datasets.get(d) if v["name"] in rows else None
                if x is not None and x["accuracy"] is not None:
                    _errorbar(ax, [(0, x)], "s", f"{v['name']} {d}")
        labels = ("number of negatives", "accuracy, % (95% CI)", "Accuracy vs negatives")
        made.append(_save(fig, ax, report / ACCURACY_PLOT, *labels))
        ppl = [(mode, n, p) for mode, pts in by_mode.items() for n, _, p in pts]
        if any(p is not None for _, _, p in ppl):
            fig, ax = plt.subplots(figsize=(6, 4))
            for mode in by_mode:
                pts_m = sorted((n, p) for m, n, p in ppl if m == mode and p is not None)
                ax.plot([n for n, _ in pts_m], [p for _, p in pts_m], marker="o", label=mode)
            for v in (v for v in variants if v["mode"] == "vanilla"):  # the positives alone: 0 negatives
                p = dev_perplexity(run, v["name"])
                if p is not None:
                    ax.plot([0], [p], marker="s", linestyle="", label=v["name"])
            labels = ("number of negatives", "held-out perplexity", "Perplexity vs negatives")
            made.append(_save(fig, ax, report / PERPLEXITY_PLOT, *labels))
    if any(v.get("round", 1) > 1 for v in variants):
        made.append(_rounds_plot(rows, variants, report / ROUNDS_PLOT))
    if len({v["pos_num"] for v in variants if v.get("round", 1) == 1 and "pos_num" in v}) > 1:
        made.append(_curve_plot(run, rows, variants, report / CURVE_PLOT))
    return made


def _curve_plot(run: Path, rows: dict[str, EvalMetrics], variants: list[dict], path: Path) -> str:
    """study.positives: accuracy (95% CI) at each number of positives the set holds ("all" is counted), one line per
    mode and data set; the base model at 0."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lines: dict[str, list[tuple[int, dict]]] = {}
    for v in (v for v in variants if v.get("round", 1) == 1 and v["name"] in rows and not v.get("twin")):
        meta = dataset_manifest(RunLayout(run).set_file(v["name"]))
        n = meta.counts.get("positives") if meta is not None else None
        n = n if isinstance(n, int) else v["pos_num"] if isinstance(v["pos_num"], int) else None
        for d, x in rows[v["name"]].datasets.items():
            if n is not None and x["accuracy"] is not None:
                # one line per variant with its size taken out (nat-pos250-neg250 and nat-pos1000-neg250 are one)
                lines.setdefault(f"{re.sub(r'-pos[^-]+', '', v['name'])} {d}", []).append((n, x))
    for d, x in rows["base"].datasets.items() if "base" in rows else []:
        for label, pts in lines.items():
            if label.endswith(f" {d}") and x["accuracy"] is not None:
                pts.append((0, x))
    for label, pts in lines.items():
        _errorbar(ax, sorted(pts, key=lambda p: p[0]), "o", label)
    sizes = sorted({n for pts in lines.values() for n, _ in pts})
    ax.set_xscale("symlog", linthresh=max(1, min((n for n in sizes if n > 0), default=1)))  # 250 .. 7k, and 0
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    return _save(fig, ax, path, "positives (gold trajectories) trained on", "accuracy, % (95% CI)", "Learning curve")


def _rounds_plot(rows: dict[str, EvalMetrics], variants: list[dict], path: Path) -> str:
    """study.rounds: accuracy (95% CI) and action-error rate per round, one line per iterated chain and data set."""
    import matplotlib.pyplot as plt

    by_name = {v["name"]: v for v in variants}
    chains: dict[str, list[dict]] = {}
    for v in variants:
        first = v
        while first.get("previous") in by_name:
            first = by_name[first["previous"]]
        if any(w.get("previous") == v["name"] for w in variants) or v.get("round", 1) > 1:
            chains.setdefault(first["name"], []).append(v)
    fig, (acc, err) = plt.subplots(1, 2, figsize=(10, 4))
    baselines: set[str] = set()  # (one line per data set, however many chains it has)
    for name, chain in chains.items():
        chain = sorted((v for v in chain if v["name"] in rows), key=lambda v: v.get("round", 1))
        for d in list(dict.fromkeys(d for v in chain for d in rows[v["name"]].datasets)):
            pts = [(v.get("round", 1), rows[v["name"]].datasets[d]) for v in chain if d in rows[v["name"]].datasets]
            _errorbar(acc, pts, "o", f"{name} {d}")
            rates = [(r, x.get("action_error_rate")) for r, x in pts if x.get("action_error_rate") is not None]
            err.plot([r for r, _ in rates], [100 * e for _, e in rates], marker="o", label=f"{name} {d}")
            majority = [x["majority_accuracy"] for _, x in pts if x.get("majority_accuracy") is not None]
            if majority and d not in baselines:  # a yes/no set: what always giving its majority answer scores
                baselines.add(d)
                acc.axhline(100 * majority[0], color="grey", linestyle="--", linewidth=1, label=f"{d}: majority answer")
    from matplotlib.ticker import MaxNLocator

    for ax in (acc, err):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    err.set_xlabel("round")
    err.set_ylabel("action-error rate, %")
    err.set_title("Invalid actions per round")
    err.legend(fontsize=8)
    return _save(fig, acc, path, "round", "accuracy, % (95% CI)", "Accuracy per round")
