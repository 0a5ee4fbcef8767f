"""Training objectives in one registry (``train.objective``), as strategies are: what each needs, from the training
set's rows to the loss, so that a new objective is one module and one entry.

An :class:`Objective` says how to read and tokenise its training set into rows (``encode``), how to put rows into a
micro-batch (``collate``), which loss module wraps the model on the workers (``module``) and which statistics that
module reports per micro-batch (``stat_keys``, all-reduced into ``metrics.jsonl``), how many sequences a row holds
(memory estimate, length grouping), and whether rows carry a frozen reference's log-probabilities, computed once before
training (``reference``) with the loss settings the workers need (``settings``). The driver (``training/trainer.py``)
and the step (``training/loop.py``) read only this. Adding one::

    from nat_ray.training.objectives import OBJECTIVES, Objective, sft

    OBJECTIVES["mine"] = Objective(encode=sft.encode, collate=sft.collate, module=lambda lm, cfg, settings: MyLoss(lm))

then ``train.objective: mine``; or, from a module of your own without touching nat_ray, ``train.objective:
mypkg.objectives:MINE`` (an :class:`Objective` at that import path, registered on first use, in the driver and in
every Ray Train worker alike; ``tests/training/test_objectives.py`` adds a toy objective that way). The parts import
torch only when called: the config validates names against this registry without loading a model library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nat_ray.config_train import TrainConfig


@dataclass(frozen=True)
class Objective:
    encode: Callable[[Any, TrainConfig], tuple[list[dict], dict]]  # (tokenizer, train section) -> rows, stats
    collate: Callable[[list[dict], int], dict]  # (rows, pad id) -> the loss module's keyword arguments
    module: Callable[[Any, TrainConfig, dict | None], Any]  # (causal LM, train section, settings) -> loss module
    stat_keys: tuple[str, ...] = ()  # what module.stats holds per micro-batch: {key: (sum, count)}
    sequences_per_row: int = 1
    reference: bool = False
    settings: Callable[[TrainConfig, dict], dict] = field(default=lambda tc, stats: {})

    def row_length(self, row: dict) -> int:
        """The longest sequence of a row (what its micro-batch is padded to)."""
        ids = row["input_ids"]
        return len(ids) if self.sequences_per_row == 1 else max(len(x) for x in ids)


class sft:
    @staticmethod
    def encode(tokenizer: Any, tc: TrainConfig) -> tuple[list[dict], dict]:
        from nat_ray.storage import read_examples
        from nat_ray.training.tokenize import encode_all

        encoded, stats = encode_all(tokenizer, read_examples(tc.data), tc.max_length, tc.drop_no_loss)
        return [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded], stats

    @staticmethod
    def collate(rows: list[dict], pad_id: int) -> dict:
        from nat_ray.training.data import collate

        return collate([r["input_ids"] for r in rows], [r["labels"] for r in rows], pad_id)

    @staticmethod
    def module(lm: Any, tc: TrainConfig, settings: dict | None) -> Any:
        from nat_ray.training.loss import AssistantLoss

        return AssistantLoss(lm, tc.head_chunk_tokens)


def _preference_encode(loss: str) -> Callable[[Any, TrainConfig], tuple[list[dict], dict]]:
    """DPO reads preference pairs, KTO labelled completions: the loss, not ``train.objective``, says which (an
    objective added by import path may reuse these parts under a name of its own)."""

    def encode(tokenizer: Any, tc: TrainConfig) -> tuple[list[dict], dict]:
        from nat_ray.storage import read_training_rows
        from nat_ray.training.preference import encode_preference
        from nat_ray.types import LabelledCompletion, PreferencePair

        records = read_training_rows(tc.data or "", PreferencePair if loss == "dpo" else LabelledCompletion)
        return encode_preference(tokenizer, records, tc.max_length, tc.drop_no_loss)  # type: ignore[arg-type]

    return encode


def _preference_collate(rows: list[dict], pad_id: int) -> dict:
    from nat_ray.training.preference import collate_preference

    return collate_preference(rows, pad_id)


def _preference_module(loss: str) -> Callable[[Any, TrainConfig, dict | None], Any]:
    def module(lm: Any, tc: TrainConfig, settings: dict | None) -> Any:
        from nat_ray.training.preference import PreferenceLoss

        weights = tuple((settings or {}).get("weights", (1.0, 1.0)))
        return PreferenceLoss(lm, loss, tc.beta, weights, tc.sft_weight, tc.head_chunk_tokens)  # type: ignore[arg-type]

    return module


def _kto_settings(tc: TrainConfig, stats: dict) -> dict:
    from nat_ray.training.preference import balanced_weights

    weights = balanced_weights(stats["desirable"], stats["undesirable"])
    return {"weights": [tc.desirable_weight or weights[0], tc.undesirable_weight or weights[1]]}


OBJECTIVES: dict[str, Objective] = {
    "sft": Objective(encode=sft.encode, collate=sft.collate, module=sft.module),
    "dpo": Objective(
        encode=_preference_encode("dpo"),
        collate=_preference_collate,
        module=_preference_module("dpo"),
        stat_keys=("reward_accuracy", "reward_margin"),
        sequences_per_row=2,
        reference=True,
        settings=lambda tc, stats: {"weights": [1.0, 1.0]},
    ),
    "kto": Objective(
        encode=_preference_encode("kto"),
        collate=_preference_collate,
        module=_preference_module("kto"),
        stat_keys=("reward_desirable", "reward_undesirable", "kl"),
        sequences_per_row=2,
        reference=True,
        settings=_kto_settings,
    ),
}


def objective_for(name: str) -> Objective:
    """The registered objective ``name``, or ``"module:attribute"``: an :class:`Objective` of an importable module,
    registered under that name on first use (so Ray Train's workers, which validate the same config, find it too)."""
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)} or give module:attribute")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"objective {name!r}: {exc}") from None
    if not isinstance(found, Objective):
        raise ValueError(f"objective {name!r} is a {type(found).__name__}, not a nat_ray Objective")
    OBJECTIVES[name] = found
    return found
