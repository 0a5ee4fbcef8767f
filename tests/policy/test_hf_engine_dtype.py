"""The transformers engine loads its weights in the dtype `policy.dtype` resolves to: bfloat16 where the hardware
multiplies it natively (auto), float32 when asked, and it says which and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.hardware import resolve_bf16
from nat_ray.policy.base import SamplingParams
from nat_ray.policy.hf_engine import HFEngine

pytestmark = pytest.mark.slow  # loads SmolLM2


@pytest.mark.parametrize("dtype", ["auto", "float32"])
def test_the_engine_loads_in_the_resolved_dtype_and_generates(smollm2: Path, dtype: str) -> None:
    import torch

    engine = HFEngine(smollm2, dtype=dtype, max_batch_size=2)
    expected = resolve_bf16(dtype, "policy.dtype", cuda=False)
    assert next(engine.model.parameters()).dtype == (torch.bfloat16 if expected.bf16 else torch.float32)
    assert engine.precision().startswith(expected.name) and f"policy.dtype: {dtype}" in engine.precision()
    # float32: every linear on oneDNN's reordered weights (30 layers x 7 + the LM head); bf16 keeps torch's own
    assert engine.packed_linears == (0 if expected.bf16 else 30 * 7 + 1)
    replies = engine.generate_batch(
        [[{"role": "user", "content": "What is 2 + 2?"}]] * 2, SamplingParams(temperature=0.0, max_tokens=8)
    )
    assert len(replies) == 2 and all(r.text.strip() for r in replies)
    assert replies[0].text == replies[1].text  # greedy: the same conversation gives the same reply in one batch
