"""The OpenVINO GenAI engine (`policy.kind: openvino`) behind the policy interface, on SmolLM2 as the project exports
it (tests/policy/test_openvino_export.py), or on the IR folder `NAT_RAY_OPENVINO_MODEL` names (an optimum-intel
export, say)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.hardware import resolve_bf16
from nat_ray.policy.base import SamplingParams


def test_a_folder_that_is_neither_a_model_nor_an_export_is_refused(tmp_path: Path) -> None:
    from nat_ray.policy.openvino_engine import OVEngine

    with pytest.raises(InputError, match=rf"{tmp_path}: not a model folder"):
        OVEngine(tmp_path)


@pytest.fixture(scope="module")
def openvino_ir(smollm2_openvino: Path) -> str:
    return os.environ.get("NAT_RAY_OPENVINO_MODEL") or str(smollm2_openvino)


@pytest.mark.slow
def test_openvino_replies_are_cut_at_the_stop_string_and_counted(openvino_ir: str) -> None:
    from nat_ray.policy.openvino_engine import OVEngine

    engine = OVEngine(openvino_ir, max_batch_size=4, num_threads=2)
    try:

        async def ask():
            convs = [[{"role": "user", "content": q}] for q in ("What is 2 + 2?", "Say hello.")]
            plain = SamplingParams(temperature=0.0, max_tokens=12)
            stop = SamplingParams(temperature=0.0, max_tokens=24, stop=(" ",))
            return await asyncio.gather(*(engine.generate(c, plain) for c in convs), engine.generate(convs[0], stop))

        a, b, cut = asyncio.run(ask())
        # policy.dtype auto: OpenVINO's CPU default, which follows the same rule as train.bf16 auto
        assert engine.precision().startswith(
            resolve_bf16("auto", "policy.dtype", cuda=False).name + " (policy.dtype: auto"
        )
        assert a.text.strip() and b.text.strip() and 0 < a.completion_tokens <= 12 and a.prompt_tokens > 5
        assert " " not in cut.text.strip() and cut.completion_tokens < 24
    finally:
        engine.close()


@pytest.mark.slow
def test_openvino_in_float32_replies_as_generate_does_on_single_turns(smollm2: Path, openvino_ir: str) -> None:
    """``dtype: float32`` (f32 arithmetic and KV cache): greedy single-turn replies equal transformers' float32
    ``generate`` (benchmarks/eval.py: 64 of 64 episodes in (b), 8 of 8 conversations in (c), docs/benchmarks.md)."""
    from nat_ray.policy.hf_engine import HFEngine
    from nat_ray.policy.openvino_engine import OVEngine

    engine = OVEngine(openvino_ir, max_batch_size=4, num_threads=2, dtype="float32")
    reference = HFEngine(smollm2, max_batch_size=1, dtype="float32")
    convs = [[{"role": "user", "content": q}] for q in ("What is 12 * 7?", "Name a prime above 10.", "Say hello.")]
    params = SamplingParams(temperature=0.0, max_tokens=24)
    try:

        async def ask():
            return await asyncio.gather(*(engine.generate(c, params) for c in convs))

        replies = asyncio.run(ask())
        assert engine.precision().startswith("float32")
        assert [r.text for r in replies] == [reference.generate_batch([c], params)[0].text for c in convs]
    finally:
        engine.close()


@pytest.mark.slow
def test_openvino_stops_where_the_stop_string_begins_in_the_prompt(smollm2: Path, openvino_ir: str) -> None:
    """A reply that opens with the rest of a stop string (``Observation:`` after the prompt's newline) stops at once,
    as ``generate`` stops it; OpenVINO's own matching sees the reply alone and ran such replies to ``max_tokens``."""
    from nat_ray.policy.hf_engine import HFEngine
    from nat_ray.policy.openvino_engine import OVEngine

    engine = OVEngine(openvino_ir, max_batch_size=2, num_threads=2, dtype="float32")
    reference = HFEngine(smollm2, max_batch_size=1, dtype="float32")
    conv = [{"role": "user", "content": "Say hello."}]
    try:
        plain = asyncio.run(engine.generate(conv, SamplingParams(temperature=0.0, max_tokens=24, stop=())))
        stop = SamplingParams(temperature=0.0, max_tokens=24, stop=("\n" + plain.text.split()[0],))  # opens the reply
        cut = asyncio.run(engine.generate(conv, stop))
        assert cut.text == reference.generate_batch([conv], stop)[0].text
        assert cut.completion_tokens < 4 < plain.completion_tokens
    finally:
        engine.close()
