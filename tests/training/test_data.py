from __future__ import annotations

import random

from nat_ray.training.data import batch_order, collate, padding_efficiency
from nat_ray.training.tokenize import IGNORE


def test_batch_order_covers_each_index_once_and_is_seeded() -> None:
    lengths = [random.Random(i).randint(10, 2000) for i in range(1000)]
    for grouped in (True, False):
        batches = batch_order(lengths, 8, seed=3, group_by_length=grouped)
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat)) == 1000 and all(len(b) == 8 for b in batches)
        assert batches == batch_order(lengths, 8, seed=3, group_by_length=grouped)
        assert batches != batch_order(lengths, 8, seed=4, group_by_length=grouped)
    assert len(batch_order(lengths[:21], 8, 0)) == 2  # the partial batch is dropped


def test_length_grouping_cuts_padding() -> None:
    lengths = [random.Random(i).randint(50, 3000) for i in range(2000)]
    grouped = padding_efficiency(lengths, batch_order(lengths, 8, 0, True))
    plain = padding_efficiency(lengths, batch_order(lengths, 8, 0, False))
    assert grouped > 0.9 > plain


def test_collate_pads_right_with_ignored_labels() -> None:
    b = collate([[1, 2, 3], [4]], [[IGNORE, 2, 3], [4]], pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
