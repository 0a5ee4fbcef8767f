"""`nat-ray report RUN_DIR` on a hand-built run folder: tables, the negatives sweep plots, run.json."""

from __future__ import annotations

import json
from pathlib import Path

from nat_ray.evaluation.metrics import eval_metrics
from nat_ray.records import EvalMetrics, TrainingRecord
from nat_ray.storage import write_record
from nat_ray.types import FinishReason, Label, Trajectory
from tests.conftest import run_cli


def _metrics(correct: int, n: int) -> EvalMetrics:
    trajs = [
        Trajectory(
            id=str(i),
            task="strategyqa",
            question="?",
            ground_truth="true",
            reward=i < correct,
            label=Label.POSITIVE if i < correct else Label.NEGATIVE,
            finish_reason=FinishReason.FINISH,
        )
        for i in range(n)
    ]
    return EvalMetrics.new(**eval_metrics({"strategyqa": trajs}, {"kind": "transformers"}, "zero-shot-target-aware"))


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    accs = {"base": 2, "vanilla": 4, "nat-neg0": 4, "nat-neg10": 6, "nat-neg20": 7}
    for name, correct in accs.items():
        (run / "eval" / name).mkdir(parents=True)
        write_record(run / "eval" / name / "metrics.json", _metrics(correct, 10))
        if name == "base":
            continue
        mode, _, neg = name.partition("-neg")
        (run / "sets" / name).mkdir(parents=True)
        manifest = {"kind": "training-set", "config": {"mode": mode, "neg_num": int(neg or 0)}}
        (run / "sets" / name / "train.jsonl.manifest.json").write_text(json.dumps(manifest))
        (run / "models" / name).mkdir(parents=True)
        steps = [{"step": s, "loss": 2.0 / s} for s in (1, 2, 3)]
        (run / "models" / name / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in steps))
        ppl = 3.0 + int(neg or 0) / 10
        record = TrainingRecord.new(train={}, step=3, total_steps=3, dev_perplexity=ppl)
        write_record(run / "models" / name / "nat_ray_train.json", record)
    return run


def test_report_of_a_run_folder(tmp_path: Path) -> None:
    import matplotlib.image

    from nat_ray.records import STAGE_FILE, RunLayout, StageManifest

    run = _run(tmp_path)
    held = StageManifest(
        stage="heldout", variant="nat-neg20", config_hash="h", counts={"perplexity": 2.5}, complete=True
    )
    RunLayout(run).heldout_dir("nat-neg20").mkdir(parents=True)
    write_record(RunLayout(run).heldout_dir("nat-neg20") / STAGE_FILE, held)  # study.heldout's, before train.dev's
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    table = (run / "report/table.md").read_text()
    assert table.splitlines()[2].startswith("| base | 20.0 [5.7, 51.0] (n=10)")
    assert "| nat-neg20 | 70.0 [39.7, 89.2] (n=10)" in table and table in r.stdout
    readme = (run / "report/README.md").read_text()
    assert "| nat-neg10 | strategyqa | 60.0 | - | 0.00 | 0 | 4.000 |" in readme
    assert "| nat-neg20 | strategyqa | 70.0 | - | 0.00 | 0 | 2.500 |" in readme
    for png in ("loss.png", "accuracy_vs_negatives.png", "perplexity_vs_negatives.png"):
        image = matplotlib.image.imread(run / "report" / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0, png
        assert f"![{png}]({png})" in readme
    info = json.loads((run / "report/run.json").read_text())
    assert info["hardware"]["cpus"] and "transformers" in info["versions"]


def test_report_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    r = run_cli("report", str(tmp_path))
    assert r.returncode == 2 and "no eval/ folder: not a pipeline run" in r.stderr


def test_variants_over_several_seeds_get_mean_and_spread(tmp_path: Path) -> None:
    from nat_ray.evaluation.report import seeds_table

    rows = {"nat-seed1": _metrics(5, 10), "nat-seed2": _metrics(7, 10), "vanilla": _metrics(4, 10)}
    table = seeds_table(rows)
    assert table is not None and "| nat (2) | 60.0 ± 14.1 |" in table
    assert seeds_table({"nat": _metrics(5, 10)}) is None


def test_report_again_keeps_the_pipelines_config_and_variant_order(tmp_path: Path) -> None:
    """`nat-ray report` on a pipeline's run folder rewrites the report from what the pipeline recorded in run.json:
    its config (not null) and its variants in the study's order (not sorted by folder name)."""
    run = _run(tmp_path)
    order = ["vanilla", "nat-neg20", "nat-neg0", "nat-neg10"]
    variants = [{"name": n, "mode": n.partition("-neg")[0], "neg_num": int(n.partition("-neg")[2] or 0)} for n in order]
    config = {"out": str(run), "train": {"lr": 1e-4}}
    (run / "report").mkdir()
    (run / "report/run.json").write_text(json.dumps({"config": config, "variants": variants}))
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    rows = [line.split(" | ")[0].lstrip("| ") for line in (run / "report/table.md").read_text().splitlines()[2:]]
    assert rows == ["base", *order]
    info = json.loads((run / "report/run.json").read_text())
    assert info["config"] == config and [v["name"] for v in info["variants"]] == order
    (run / "report/run.json").write_text("{not json")
    r = run_cli("report", str(run))
    assert r.returncode == 2 and "report/run.json:1: malformed JSON" in r.stderr


def test_a_learning_curve_gets_accuracy_vs_positives(tmp_path: Path) -> None:
    import matplotlib.image

    run = tmp_path / "run"
    variants = [{"name": f"vanilla-pos{p}", "mode": "vanilla", "neg_num": 0, "pos_num": p} for p in (2, 4, "all")]
    for name, correct, held in (("base", 0, None), ("vanilla-pos2", 2, 2), ("vanilla-pos4", 4, 4),
                                ("vanilla-posall", 6, 9)):  # fmt: skip
        (run / "eval" / name).mkdir(parents=True)
        write_record(run / "eval" / name / "metrics.json", _metrics(correct, 10))
        if held is not None:  # "all" is plotted at the positives its set holds
            (run / "sets" / name).mkdir(parents=True)
            manifest = {"kind": "training-set", "counts": {"positives": held, "negatives": 0}}
            (run / "sets" / name / "train.jsonl.manifest.json").write_text(json.dumps(manifest))
    (run / "report").mkdir()
    (run / "report/run.json").write_text(json.dumps({"config": {"out": str(run)}, "variants": variants}))
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    image = matplotlib.image.imread(run / "report/accuracy_vs_positives.png")
    assert image.ndim == 3 and image.std() > 0
    assert "![accuracy_vs_positives.png](accuracy_vs_positives.png)" in (run / "report/README.md").read_text()
    assert not (run / "report/accuracy_vs_negatives.png").exists()
