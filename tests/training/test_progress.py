"""The train stage's progress line shows a rate and an ETA only once they are measured: not "0.0 s/step | ETA 0:00 |
3821 tok/s" after the first micro-batch, whose warm-up and tokens fall before the clock starts."""

from __future__ import annotations

from pathlib import Path

from nat_ray.training import progress as progress_mod
from nat_ray.training.progress import TrainProgress


def test_rates_and_eta_appear_only_once_measured(tmp_path: Path, monkeypatch, capsys) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    p = TrainProgress(events=None, metrics_log=tmp_path / "none.jsonl", workers=2, accumulation=1)
    p._handle({"event": "ready", "rank": 0, "total_steps": 24, "step": 0, "precision": "bf16"})
    clock[0] = 160.0  # the first micro-batch: model warm-up, 60 s
    p._handle({"event": "micro", "rank": 0, "micro": 1, "step": 1, "tokens": 1000})
    p._handle({"event": "micro", "rank": 1, "micro": 1, "step": 1, "tokens": 900})
    p._draw(final=True)
    first = capsys.readouterr().err.strip().splitlines()[-1]
    assert first.startswith("train 1/24 steps") and "s/step" not in first and "ETA" not in first
    assert "tok/s" not in first
    clock[0] = 164.0  # two more steps, 2 s each, 1,000 tokens per rank per step
    for step in (2, 3):
        for rank in (0, 1):
            p._handle({"event": "micro", "rank": rank, "micro": 1, "step": step, "tokens": 1000})
    clock[0] = 170.0  # drawn later, with the next step still running: its tokens are not in yet
    p._draw(final=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "train 3/24 steps" in line and "2.0 s/step" in line and "ETA 0:42" in line
    assert "1000 tok/s" in line  # 4,000 tokens between the clock's start and the last micro-batch's end (4 s)
