"""``nat-ray pool-seeds``: runs of one study that differ in their training seed, joined into one report whose
comparisons are per seed and pooled over the seeds, against hand-counted discordant pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.cli import main
from nat_ray.errors import InputError
from nat_ray.evaluation.metrics import eval_metrics, group_by_task
from nat_ray.evaluation.report_seeds import config_differences, write_seeds_report
from nat_ray.records import RUN_RECORD, DatasetManifest, RunLayout, RunRecord
from nat_ray.storage import write_examples, write_json, write_record, write_trajectories
from nat_ray.types import Example, FinishReason, Label, Trajectory, Turn


def _t(qid: int, task: str, right: bool) -> Trajectory:
    return Trajectory(id=str(qid), task=task, question=f"q{qid}?", ground_truth="1", prediction="1" if right else "2",
                      reward=right, label=Label.POSITIVE if right else Label.NEGATIVE,
                      finish_reason=FinishReason.FINISH)  # fmt: skip


def _variant(name: str, mode: str, seed: int, twin: str | None = None) -> dict:
    return {"name": name, "mode": mode, "template": None, "pos_num": 10, "neg_num": 0 if mode == "vanilla" else 10,
            "build_seed": 42, "train_seed": seed, "negative_source": "regenerated", "match": "steps" if twin else
            "epochs", "twin": twin, "round": 1, "previous": None}  # fmt: skip


def _run(folder: Path, seed: int, right: dict[str, set[int]], lr: float = 1e-4) -> Path:
    """A pipeline run folder of one seed: vanilla, nut, and vanilla's steps control; ``right``: each row's right
    multiarith questions of 0-9 (svamp: all wrong)."""
    layout = RunLayout(folder)
    variants = [_variant("vanilla", "vanilla", seed), _variant("nut", "nut", seed),
                _variant("vanilla-steps", "vanilla", seed, twin="vanilla")]  # fmt: skip
    for name, ids in right.items():
        trajs = [_t(i, "multiarith", i in ids) for i in range(10)] + [_t(i, "svamp", False) for i in range(10)]
        for task, group in group_by_task(trajs).items():
            write_trajectories(group, layout.eval_dir(name) / task)
        write_json(layout.eval_dir(name) / "metrics.json", eval_metrics(group_by_task(trajs), {}, "zero-shot"))
    calls = [Turn(role="assistant", content=f"Action: calculate[1+{k}]", loss=True) for k in range(seed)]
    failure = Example(id="0", label="negative", messages=[*calls, Turn(role="assistant", content="Action: finish[3]",
                      loss=True)])  # fmt: skip
    write_examples([failure], layout.set_file("nut"), DatasetManifest(kind="training-set"))
    config = {"out": str(folder), "train": {"seed": seed, "lr": lr}, "study": {"modes": ["vanilla", "nut"]}}
    write_record(layout.report / RUN_RECORD, RunRecord.new(config=config, variants=variants))
    return folder


def test_two_seeds_are_paired_per_seed_and_pooled(tmp_path: Path, capsys) -> None:
    # seed 1: nut right on 0-5, vanilla on 0-1 (nut only 4, vanilla only 0); seed 2: nut on 0-2, vanilla on 0-3
    # (nut only 0, vanilla only 1): pooled over the seeds, 20 multiarith pairs with 4 and 1 discordant
    a = _run(tmp_path / "s1", 1, {"vanilla": {0, 1}, "nut": set(range(6)), "vanilla-steps": {0}})
    b = _run(tmp_path / "s2", 2, {"vanilla": set(range(4)), "nut": set(range(3)), "vanilla-steps": set(range(4))})
    out = tmp_path / "pooled"
    counts = write_seeds_report([a, b], out)
    assert counts["rows"] == 6 and counts["config_differences"] == []
    rows = json.loads((out / "comparisons.json").read_text())
    acc = {(r["a"], r["b"], r["dataset"], r["seeds"]): (r["n_pairs"], r["a_only"], r["b_only"])
           for r in rows if r["outcome"] == "accuracy"}  # fmt: skip
    assert acc[("nut-seed1", "vanilla-seed1", "multiarith", 1)] == (10, 4, 0)
    assert acc[("nut-seed2", "vanilla-seed2", "multiarith", 1)] == (10, 0, 1)
    assert acc[("nut", "vanilla", "multiarith", 2)] == (20, 4, 1)
    # with the seeds random too: each seed's difference on the same 10 questions (+4 and −1 of 10)
    crossed = next(r["crossed"] for r in rows if (r["a"], r["b"], r["dataset"], r["seeds"]) ==
                   ("nut", "vanilla", "multiarith", 2))  # fmt: skip
    assert crossed["per_seed"] == pytest.approx([0.4, -0.1]) and crossed["diff"] == pytest.approx(0.15)
    assert crossed["seeds"] == 2 and crossed["questions"] == 10 and crossed["p_holm"] >= crossed["p"]
    assert all(r["crossed"] is None for r in rows if r["seeds"] == 1)
    # the control against its own variant and the variant it was matched to, per seed and pooled
    assert acc[("nut", "vanilla-steps", "multiarith", 2)] == (20, 5, 1)
    assert acc[("vanilla-steps", "vanilla", "all math (pooled)", 2)] == (40, 0, 1)
    # what the seed alone moved: vanilla seed 1 right on 0-1, seed 2 on 0-3 (0 and 2 discordant)
    seed = {(r["a"], r["b"], r["dataset"]): (r["n_pairs"], r["a_only"], r["b_only"]) for r in rows
            if r["outcome"] == "seed"}  # fmt: skip
    assert seed[("vanilla-seed1", "vanilla-seed2", "multiarith")] == (10, 0, 2)
    assert {a.rsplit("-seed", 1)[0] for a, _, _ in seed} == {"vanilla", "nut", "vanilla-steps"}
    text = (out / "README.md").read_text()
    assert "| nut (2) | 45.0 ± 21.2 | 0.0 ± 0.0 | 22.5 ± 10.6 |" in text  # per set and over the math sets pooled
    assert "differ (beyond `out` and `train.seed`) in: nothing" in text
    assert "## What the training seed alone moves" in text
    assert "### Over training seeds and questions" in text
    assert "| nut − vanilla | multiarith | 2 × 10 | +40.0, -10.0 |" in text
    assert json.loads((out / "runs.json").read_text()) == [str(a), str(b)]  # what `--plan-from` reads rates from
    # each seed's own set, under its row's name (seed 2's negatives call the calculator twice: its own failures)
    assert "| nut-seed1 | negative | 1 | 1.00 | 100.0 | 100.0 |" in text
    assert "| nut-seed2 | negative | 1 | 2.00 | 0.0 | 100.0 |" in text

    assert main(["pool-seeds", str(a), str(b), "--out", str(tmp_path / "cli")]) == 0
    assert '"pooled": ' in capsys.readouterr().out


def test_runs_that_cannot_be_pooled_are_refused_by_name(tmp_path: Path) -> None:
    a = _run(tmp_path / "s1", 1, {"vanilla": {0}, "nut": {1}})
    same = _run(tmp_path / "again", 1, {"vanilla": {0}, "nut": {1}})
    with pytest.raises(InputError, match=r"'vanilla' with training seed 1 is also in .*s1"):
        write_seeds_report([a, same], tmp_path / "out")
    with pytest.raises(InputError, match="two or more run folders"):
        write_seeds_report([a], tmp_path / "out")
    with pytest.raises(InputError, match=r"missing: no report/run.json"):
        write_seeds_report([a, tmp_path / "missing"], tmp_path / "out")
    assert main(["pool-seeds", str(a), str(same), "--out", str(tmp_path / "out")]) == 2


def test_config_differences_beyond_the_seed_are_listed() -> None:
    a = {"out": "runs/a", "train": {"seed": 1, "lr": 1e-4}, "eval": {"limit": None}}
    b = {"out": "runs/b", "train": {"seed": 2, "lr": 2e-4}, "eval": {"limit": None}}
    assert config_differences([a, b]) == ["train.lr"]
    assert config_differences([a, a | {"rollout": {"limit": 5}}]) == ["rollout.limit"]
