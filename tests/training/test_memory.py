"""Peak-memory measurement and the pre-flight estimate that refuses a run which cannot fit."""

from __future__ import annotations

import subprocess
import sys

import pytest
from transformers import LlamaConfig

from nat_ray.training.memory import (
    GB,
    ModelShape,
    TrainingMemoryError,
    check_fits,
    estimate_peak_bytes,
    knobs,
)

SMOLLM2 = LlamaConfig(  # SmolLM2-135M's shape
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    tie_word_embeddings=True,
)


def test_model_shape_counts_smollm2_parameters() -> None:
    shape = ModelShape.from_config(SMOLLM2)
    assert 134e6 < shape.params < 135e6  # 134,515,008 in the real model


def test_estimate_grows_with_the_knobs_and_shrinks_with_checkpointing() -> None:
    shape = ModelShape.from_config(SMOLLM2)

    def est(**kw) -> int:  # type: ignore[no-untyped-def]
        args = {
            "strategy": "deepspeed",
            "workers": 2,
            "micro_batch_size": 1,
            "seq_len": 1024,
            "gradient_checkpointing": False,
            "chunk_tokens": 1024,
        }
        return estimate_peak_bytes(shape, **(args | kw))

    assert est(micro_batch_size=4) > est(micro_batch_size=2) > est()
    assert est(seq_len=2048) > est()
    assert est(gradient_checkpointing=True, micro_batch_size=4) < 0.6 * est(micro_batch_size=4)
    assert est(strategy="ddp", shard_optimizer=False) > est(strategy="ddp")  # ZeRO-1 halves the AdamW moments
    assert est(workers=8) < est(workers=2)  # ZeRO-3 shards weights, gradients and moments
    assert est(chunk_tokens=None, micro_batch_size=4) > est(micro_batch_size=4)  # one head call: all logits at once
    assert est(autocast_bf16=True) - est() == 2 * shape.params  # autocast's bf16 copy of the weights


def test_check_fits_names_our_knobs() -> None:
    advice = knobs(4, 2048, False, 2)
    check_fits(2 * GB, 2, 10 * GB, "a run", advice)
    with pytest.raises(TrainingMemoryError) as err:
        check_fits(6 * GB, 2, 10 * GB, "a run", advice)
    message = str(err.value)
    for knob in ("train.micro_batch_size", "train.max_length", "train.gradient_checkpointing=true"):
        assert knob in message
    assert "\n" not in message and "(now 4)" in message
    assert "already on" in knobs(1, 2048, True, 2)


def test_peak_rss_sees_an_allocation() -> None:
    # in a fresh process: in this one, memory freed by earlier tests stays resident and a new block may reuse it
    code = """
import numpy as np
from nat_ray.training.memory import PeakRSS
meter = PeakRSS(interval=0.01)
before = meter.peak
block = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, touched
block.sum()
del block
print(meter.stop() - before)
"""
    grown = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown > 250 * 1024 * 1024
