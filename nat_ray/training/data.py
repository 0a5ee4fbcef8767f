"""Micro-batches for training: grouped by length to cut padding, padded, with their padding efficiency."""

from __future__ import annotations

import random
from collections.abc import Sequence

from nat_ray.training.tokenize import IGNORE


def batch_order(
    lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True, group: int = 50
) -> list[list[int]]:
    """Indices of each micro-batch for one epoch (``seed`` should include the epoch).

    With ``group_by_length`` (as transformers' length-grouped sampler): shuffle, cut into mega-batches of
    ``group x batch_size``, sort each by length, cut into micro-batches, and shuffle the micro-batches, so batches hold
    similar lengths while the order stays random. A last partial micro-batch is dropped (every worker takes the same
    number of steps).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * group
        order = [i for s in range(0, len(order), mega) for i in sorted(order[s : s + mega], key=lambda i: -lengths[i])]
    batches = [order[s : s + batch_size] for s in range(0, len(order) - batch_size + 1, batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def padding_efficiency(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Non-pad tokens / all tokens when each batch is padded to its longest sequence."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return real / padded if padded else 1.0


def collate(input_ids: list[list[int]], labels: list[list[int]], pad_id: int) -> dict:
    import torch

    width = max(len(x) for x in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    lab = torch.full((len(input_ids), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for r, (x, y) in enumerate(zip(input_ids, labels, strict=True)):
        ids[r, : len(x)] = torch.tensor(x)
        lab[r, : len(y)] = torch.tensor(y)
        mask[r, : len(x)] = 1
    return {"input_ids": ids, "labels": lab, "attention_mask": mask}
