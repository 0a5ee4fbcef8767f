"""Objectives in one registry: the shipped ones read from it, a name that is not there is named, and a new objective
is one module (an Objective at an import path) that trains through Ray Train without touching nat_ray; the step is a
plain function any strategy can drive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from nat_ray.config import TrainConfig
from nat_ray.training.loop import micro_step
from nat_ray.training.loss import AssistantLoss
from nat_ray.training.objectives import OBJECTIVES, Objective, objective_for, sft
from nat_ray.training.preference import STAT_KEYS
from nat_ray.training.tokenize import IGNORE
from tests.training.test_loss import _tiny


class CountingLoss(AssistantLoss):
    """The SFT loss, reporting how many labelled tokens each micro-batch had."""

    def forward(self, input_ids, attention_mask, labels):  # type: ignore[no-untyped-def,override]
        self.stats = {"labelled_tokens": (float((labels[:, 1:] != IGNORE).sum()), 1)}
        return super().forward(input_ids, attention_mask, labels)


# a new objective, defined outside nat_ray: `train.objective: tests.training.test_objectives:COUNTING`
COUNTING = Objective(
    encode=sft.encode,
    collate=sft.collate,
    module=lambda lm, cfg, settings: CountingLoss(lm, cfg.head_chunk_tokens),
    stat_keys=("labelled_tokens",),
)


def test_shipped_objectives_and_unknown_names() -> None:
    assert set(OBJECTIVES) >= {"sft", "dpo", "kto"}
    assert STAT_KEYS["kto"] == OBJECTIVES["kto"].stat_keys and OBJECTIVES["dpo"].sequences_per_row == 2
    with pytest.raises(ValidationError, match="unknown objective 'orpo'; choose from sft, dpo, kto"):
        TrainConfig(model="m", objective="orpo")
    with pytest.raises(ValidationError, match=r"'tests\.training\.test_objectives:nothing'.*has no attribute"):
        TrainConfig(model="m", objective="tests.training.test_objectives:nothing")
    with pytest.raises(ValidationError, match="is a type, not a nat_ray Objective"):
        TrainConfig(model="m", objective="tests.training.test_objectives:CountingLoss")
    name = "tests.training.test_objectives:COUNTING"
    assert TrainConfig(model="m", objective=name).objective == name and objective_for(name) is COUNTING


class PlainStrategy:
    """Forward and backward without Ray or DDP: what micro_step needs of a strategy."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.module(**batch)

    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        (loss / 2).backward()
        if boundary:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def test_the_step_is_a_plain_function() -> None:
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in (12, 20, 16, 9):
        ids = torch.randint(1, 97, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE] * (n // 2) + ids[n // 2 :]})
    module = COUNTING.module(_tiny(), TrainConfig(model="m", strategy="ddp"), None).train()
    strategy = PlainStrategy(module)
    first = micro_step(strategy, module, COUNTING, rows[:2], 0, boundary=False)
    assert first.tokens == 32 and first.padded == 40  # 12 + 20 real tokens, padded to 2 x 20
    assert first.stats == {"labelled_tokens": (16.0, 1)}  # the second halves: 6 + 10 labels
    losses = [micro_step(strategy, module, COUNTING, rows[s : s + 2], 0, boundary=s == 2).loss
              for _ in range(20) for s in (0, 2)]  # fmt: skip
    assert losses[-1] < 0.7 * losses[0]  # the optimizer steps did run


@pytest.mark.slow
def test_a_new_objective_trains_through_ray_train(tmp_path: Path, smollm2: Path, ray_local) -> None:
    from nat_ray.training.trainer import run_train
    from tests.training.test_train_ray import _cfg, _toy_set, tiny_llama_folder

    tiny_llama = tiny_llama_folder(tmp_path / "tiny", smollm2)
    data = _toy_set(tmp_path / "toy.jsonl", 16)
    name = "tests.training.test_objectives:COUNTING"
    cfg = _cfg(tmp_path, tiny_llama, data, "train.strategy=ddp", "train.max_steps=2", "train.log_every=1",
               f"train.objective={name}")  # fmt: skip
    summary = run_train(cfg, progress=False)
    assert summary["step"] == 2
    rows = [json.loads(line) for line in (Path(summary["out"]) / "metrics.jsonl").read_text().splitlines()]
    assert all(r["labelled_tokens"] > 0 for r in rows)  # the objective's own statistic, all-reduced per log
    saved = json.loads((Path(summary["out"]) / "nat_ray_train.json").read_text())
    assert saved["config"]["train"]["objective"] == name
