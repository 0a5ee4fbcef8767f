"""Which stopped training a rerun resumes: the one with the same model, examples and settings, and no other."""

from __future__ import annotations

from pathlib import Path

from nat_ray.config_train import TrainConfig
from nat_ray.training.trainer import resumable_run, run_key

ROWS = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}]


def _key(rows: list[dict] = ROWS, out: str = "/runs/a/checkpoint", **train: object) -> str:
    tc = TrainConfig.model_validate({"model": "smollm2", "data": "train.jsonl", **train})
    return run_key(tc, Path("/models/m"), Path(out), rows, [])


def test_the_key_follows_what_the_run_computes_not_how_it_is_watched() -> None:
    base = _key()
    assert _key(log_every=1, checkpoint_every=5, max_failures=0) == base
    assert _key(lr=3e-4) != base
    assert _key(micro_batch_size=2) != base
    assert _key(rows=[{"input_ids": [1, 2, 4], "labels": [-100, 2, 4]}]) != base
    assert _key(out="/runs/b/checkpoint") != base


def test_a_run_keeps_its_own_checkpoints_and_removes_other_runs_leftovers(tmp_path: Path) -> None:
    said: list[str] = []
    mine = tmp_path / "train-aaaa"
    (mine / "checkpoint_2026-12-07_00-00-00.000000").mkdir(parents=True)
    (tmp_path / "train-aaaa.metrics.jsonl").write_text('{"step": 3}\n')
    (tmp_path / "train-bbbb" / "checkpoint_x").mkdir(parents=True)  # another training set's stopped run
    (tmp_path / "ray_train_run-2026-12-06_10-00-00").mkdir()  # an older version's randomly named run
    assert resumable_run(tmp_path, "aaaa", said.append) == "train-aaaa"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-aaaa", "train-aaaa.metrics.jsonl"]
    assert said[0].startswith("removed 2 leftover(s)") and "resuming" in said[1]

    fresh = tmp_path / "fresh"
    assert resumable_run(fresh, "cccc", said.append) == "train-cccc" and fresh.is_dir() and len(said) == 2

    # stopped before its first checkpoint: its run starts over, and so does its metrics log
    (fresh / "train-cccc").mkdir()
    (fresh / "train-cccc.metrics.jsonl").write_text('{"step": 1}\n')
    assert resumable_run(fresh, "cccc", said.append) == "train-cccc" and len(said) == 2
    assert not (fresh / "train-cccc.metrics.jsonl").exists()
