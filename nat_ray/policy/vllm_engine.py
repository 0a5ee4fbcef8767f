"""An in-cluster policy engine on vLLM (GPU only; ``pip install vllm``). Same interface as ``HFEngine``.

vLLM batches concurrent requests itself (continuous batching), so ``generate`` just submits. CI has no GPU and no
vLLM: this engine is not exercised by the test suite; the transformers engine is the tested path.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.models import resolve_model_path
from nat_ray.policy.base import Completion, SamplingParams, trim_at_stop


class VLLMEngine:
    def __init__(self, model: str | Path, gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError:
            raise InputError("policy kind 'vllm' needs vLLM on a GPU node: pip install vllm") from None
        path = resolve_model_path(str(model))
        args = AsyncEngineArgs(
            model=str(path), gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size
        )
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self.model_name = str(path)
        self._tokenizer = None

    async def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        from vllm import SamplingParams as VSamplingParams

        if self._tokenizer is None:
            self._tokenizer = await self.engine.get_tokenizer()
        prompt = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        sampling = VSamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop),
            seed=params.seed,
        )
        final = None
        async for output in self.engine.generate(prompt, sampling, request_id=uuid.uuid4().hex):
            final = output
        assert final is not None
        out = final.outputs[0]
        return Completion(
            text=trim_at_stop(out.text, params.stop),
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=len(out.token_ids),
        )
