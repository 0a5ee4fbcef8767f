"""``nat-ray report RUN_DIR``: the paper-shaped tables and plots of a pipeline run, from its stage outputs.

``report/README.md`` (what was compared, on what, the tables), ``report/table.md`` (the accuracy table alone, which
the pipeline prints), ``report/run.json`` (config, git commit, data hashes, versions, hardware, stage timings) and
PNG plots: training loss of every variant, accuracy vs number of negatives per mode (the paper's Figure 2) and
held-out perplexity vs number of negatives (Figure 4) when the run varies the negatives.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.pipeline.stages import STAGE_FILE, read_stage, versions
from nat_ray.storage import write_json


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _rows(run: Path, variants: list[str] | None = None) -> dict[str, dict]:
    """{row name: metrics.json} for base, each variant (in the study's order), teacher."""
    evals = run / "eval"
    if not evals.is_dir():
        raise InputError(f"{run}: no eval/ folder: not a pipeline run (or nothing was evaluated yet)")
    found = {
        p.name: json.loads((p / "metrics.json").read_text()) for p in evals.iterdir() if (p / "metrics.json").exists()
    }
    rest = [k for k in variants or [] if k in found] + sorted(k for k in found if k not in (variants or []))
    order = ["base", *(k for k in rest if k not in ("base", "teacher")), "teacher"]
    return {k: found[k] for k in order if k in found}


def _train_info(run: Path, name: str) -> dict:
    path = run / "models" / name / "nat_ray_train.json"
    return json.loads(path.read_text()) if path.exists() else {}


def accuracy_table(rows: dict[str, dict]) -> str:
    datasets = list(dict.fromkeys(d for m in rows.values() for d in m["datasets"]))
    has_math = any("math_average" in m for m in rows.values())
    head = ["variant", *datasets, *(["math avg"] if has_math else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows.items():
        cells = [name]
        for d in datasets:
            x = m["datasets"].get(d)
            if x is None:
                cells.append("")
                continue
            lo, hi = x["accuracy_ci95"]
            cell = f"{_pct(x['accuracy'])} [{_pct(lo)}, {_pct(hi)}] (n={x['n']})"
            if "f1" in x:
                cell += f" EM {_pct(x.get('em'))} F1 {_pct(x.get('f1'))}"
            cells.append(cell)
        if has_math:
            cells.append(_pct(m.get("math_average")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_table(rows: dict[str, dict]) -> str | None:
    """Variants that differ only in their training seed (``…-seedN``): mean and sample standard deviation of the
    accuracy over the seeds, per data set. None when no variant has several seeds."""
    import re
    import statistics

    groups: dict[str, list[dict]] = {}
    for name, m in rows.items():
        match = re.fullmatch(r"(.+)-seed\d+", name)
        if match:
            groups.setdefault(match.group(1), []).append(m)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return None
    datasets = list(dict.fromkeys(d for ms in groups.values() for m in ms for d in m["datasets"]))
    lines = ["| variant (seeds) | " + " | ".join(datasets) + " |", "|" + "---|" * (len(datasets) + 1)]
    for name, ms in groups.items():
        cells = []
        for d in datasets:
            accs = [
                100 * m["datasets"][d]["accuracy"] for m in ms if m["datasets"].get(d, {}).get("accuracy") is not None
            ]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{statistics.mean(accs):.1f} ± {sd:.1f}" if accs else "")
        lines.append(f"| {name} ({len(ms)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def behaviour_table(rows: dict[str, dict], run: Path) -> str:
    """The paper's Table 6 measures, and the held-out perplexity where the run measured it."""
    lines = [
        "| variant | dataset | accuracy | action-error rate | avg turns | errors | held-out perplexity |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        ppl = _train_info(run, name).get("dev_perplexity")
        for d, x in m["datasets"].items():
            turns = "-" if x["avg_turns"] is None else f"{x['avg_turns']:.2f}"
            lines.append(
                f"| {name} | {d} | {_pct(x['accuracy'])} | {_pct(x['action_error_rate'])} | {turns} | "
                f"{x['errors']} | {'-' if ppl is None else f'{ppl:.2f}'} |"
            )
    return "\n".join(lines)


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> str:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _plots(run: Path, rows: dict[str, dict], variants: list[dict], report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = 0
    for v in variants:
        path = run / "models" / v["name"] / "metrics.jsonl"
        if path.exists():
            points = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            points = [p for p in points if p.get("loss") is not None]
            if points:
                ax.plot([p["step"] for p in points], [p["loss"] for p in points], marker="o", label=v["name"])
                curves += 1
    if curves:
        made.append(
            _save(fig, ax, report / "loss.png", "optimizer step", "training loss (assistant tokens)", "Training loss")
        )
    plt.close(fig)

    by_mode: dict[str, list[tuple[int, dict, dict]]] = {}
    for v in variants:
        if v["mode"] != "vanilla" and isinstance(v["neg_num"], int) and v["name"] in rows:
            by_mode.setdefault(v["mode"], []).append((v["neg_num"], rows[v["name"]], _train_info(run, v["name"])))
    if any(len({n for n, _, _ in pts}) > 1 for pts in by_mode.values()):
        datasets = list(next(iter(rows.values()))["datasets"])
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode, pts in by_mode.items():
            for d in datasets:
                pts_d = sorted((n, m["datasets"][d]) for n, m, _ in pts if d in m["datasets"])
                xs = [n for n, _ in pts_d]
                acc = [100 * (x["accuracy"] or 0) for _, x in pts_d]
                err = [
                    [100 * ((x["accuracy"] or 0) - x["accuracy_ci95"][0]) for _, x in pts_d],
                    [100 * (x["accuracy_ci95"][1] - (x["accuracy"] or 0)) for _, x in pts_d],
                ]
                ax.errorbar(xs, acc, yerr=err, marker="o", capsize=3, label=f"{mode} {d}")
        labels = ("number of negatives", "accuracy, % (95% CI)", "Accuracy vs negatives")
        made.append(_save(fig, ax, report / "accuracy_vs_negatives.png", *labels))
        ppl = [(mode, n, info.get("dev_perplexity")) for mode, pts in by_mode.items() for n, _, info in pts]
        if any(p is not None for _, _, p in ppl):
            fig, ax = plt.subplots(figsize=(6, 4))
            for mode in by_mode:
                pts_m = sorted((n, p) for m, n, p in ppl if m == mode and p is not None)
                ax.plot([n for n, _ in pts_m], [p for _, p in pts_m], marker="o", label=mode)
            labels = ("number of negatives", "held-out perplexity", "Perplexity vs negatives")
            made.append(_save(fig, ax, report / "perplexity_vs_negatives.png", *labels))
    return made


def _git_commit() -> str | None:
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
        )
    except OSError:
        return None
    return r.stdout.strip() or None


def _stages(run: Path) -> list[dict]:
    out = []
    for path in sorted(run.rglob(STAGE_FILE)):
        stage = read_stage(path.parent)
        if stage is not None and stage.stage != "report":
            out.append(
                {"stage": stage.stage, "variant": stage.variant, "seconds": stage.seconds, "inputs": stage.inputs}
            )
    return out


def write_report(run: str | Path, config: dict | None = None, variants: list[dict] | None = None) -> dict:
    run = Path(run)
    rows = _rows(run, [v["name"] for v in variants] if variants else None)
    if variants is None:  # `nat-ray report` on a finished run: the variants its stages recorded
        variants = []
        for folder in sorted((run / "sets").glob("*")) if (run / "sets").exists() else []:
            meta = (
                json.loads((folder / "train.jsonl.manifest.json").read_text())
                if (folder / "train.jsonl.manifest.json").exists()
                else {}
            )
            c = meta.get("config", {})
            variants.append({"name": folder.name, "mode": c.get("mode"), "neg_num": c.get("neg_num")})
    report = run / "report"
    report.mkdir(parents=True, exist_ok=True)
    plots = _plots(run, rows, variants, report)
    table = accuracy_table(rows)
    seeds = seeds_table(rows)
    (report / "table.md").write_text(table + "\n")
    stages = _stages(run)
    total = sum(s["seconds"] or 0 for s in stages)
    template = {name: m.get("template") for name, m in rows.items()}
    text = [
        f"# Report: {run.name}",
        "",
        "Rows: `base` is the model before fine-tuning, one row per trained variant (its training set: mode, number of "
        "positives / negatives, template, seed), `teacher` the collected trajectories themselves (scored, not "
        "generated: on the questions they were collected on). Cells: accuracy % with its 95% Wilson interval and the "
        "number of test episodes; intervals that overlap do not separate the variants.",
        "",
        "## Accuracy",
        "",
        table,
        "",
        *(["## Over training seeds (mean ± standard deviation of accuracy, %)", "", seeds, ""] if seeds else []),
        "## Behaviour (the paper's Table 6) and held-out perplexity",
        "",
        behaviour_table(rows, run),
        "",
        "## Variants",
        "",
        *[f"- `{v['name']}`: mode {v['mode']}, negatives {v.get('neg_num')}, eval template "
          f"{template.get(v['name'])}" for v in variants],
        "",
        "## Plots",
        "",
        *[f"![{p}]({p})" for p in plots],
        "",
        f"Stage time, summed: {total:.0f} s. Config, versions, hardware and data hashes: `run.json`.",
    ]  # fmt: skip
    (report / "README.md").write_text("\n".join(text) + "\n")
    write_json(
        report / "run.json",
        {
            "config": config,
            "git_commit": _git_commit(),
            "versions": versions(),
            "hardware": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
            "stages": stages,
            "plots": plots,
        },
    )
    return {"rows": len(rows), "plots": len(plots)}
