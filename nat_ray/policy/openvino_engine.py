"""The OpenVINO GenAI engine (``policy.kind: openvino``, the shipped CPU configs' engine): continuous batching with
prefix caching on OpenVINO's CPU runtime.

Measured against the transformers engine in ``benchmarks/eval.py`` (docs/benchmarks.md says why it is the default).
``model`` is a model folder or prepared name (exported to OpenVINO IR by ``nat_ray.policy.openvino_export`` the first
time, then cached: a run's fine-tuned checkpoints are served as they are) or an IR folder exported elsewhere
(``optimum-cli export openvino``). Prompts are tokenized with the model's own chat template by the transformers
tokenizer, as in the other engines, so every engine sees the same ids.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nat_ray.errors import InputError
from nat_ray.policy.base import (
    STOP_WINDOW,
    Completion,
    SamplingParams,
    chat_token_ids,
    hits_stop,
    settle_threadsafe,
    trim_at_stop,
)

# policy.dtype -> the CPU plugin's properties. ``auto`` keeps the IR's and OpenVINO's own choices (what a user of it
# gets: bf16 where the CPU has it; the KV cache in f16 for the project's exports and optimum-intel's, else on x86
# u8-compressed); float32 asks for f32 arithmetic and an f32 KV cache, the setting whose greedy replies can equal
# transformers' float32 ``generate``.
_PRECISION: dict[str, dict[str, str]] = {
    "auto": {},
    "float32": {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"},
    "bfloat16": {"INFERENCE_PRECISION_HINT": "bf16"},
}
_OV_TYPES = {"bf16": "bfloat16", "f32": "float32", "f16": "float16"}  # OpenVINO's element types, by torch's names


def _cache_gb(path: Path, rows: int, tokens_per_row: int = 1024) -> float:
    """KV cache for ``rows`` conversations of ``tokens_per_row`` in float32 (the largest precision it is kept in): a
    full batch of the quickstart's math episodes (64 of ~1,000 tokens, SmolLM2: 3 GB) without preempting any."""
    from nat_ray.policy.openvino_export import kv_shape

    layers, heads, head_dim = kv_shape(json.loads((path / "config.json").read_text()))
    return layers * 2 * heads * head_dim * 4 * rows * tokens_per_row / 1e9


@dataclass
class _Running:
    handle: Any  # openvino_genai.GenerationHandle
    prompt_tokens: int
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future
    tokens: list[int] = field(default_factory=list)


class OVEngine:
    def __init__(
        self,
        model: str | Path,
        max_batch_size: int = 16,
        num_threads: int | None = None,
        cache_gb: float | None = None,
        dtype: str = "auto",
    ) -> None:
        try:
            import openvino_genai as og
        except ImportError:
            raise InputError(
                "policy.kind openvino needs openvino-genai, a dependency of nat-ray: reinstall it (scripts/setup.sh)"
            ) from None
        from transformers import AutoTokenizer

        from nat_ray.policy.openvino_export import openvino_model_dir

        path = openvino_model_dir(model)
        self.model_name = str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        sched = og.SchedulerConfig()
        sched.enable_prefix_caching = True
        sched.max_num_seqs = max_batch_size
        sched.max_num_batched_tokens = max(512, 64 * max_batch_size)
        sched.dynamic_split_fuse = True
        sched.cache_size = max(1, math.ceil(cache_gb or _cache_gb(path, max_batch_size)))
        if dtype not in _PRECISION:
            raise InputError(f"policy.dtype: {dtype!r} is not one of {sorted(_PRECISION)} for the openvino engine")
        props: dict[str, Any] = dict(_PRECISION[dtype])
        self.dtype = dtype
        if num_threads:
            props["INFERENCE_NUM_THREADS"] = num_threads
        self._og = og
        self._pipe = og.ContinuousBatchingPipeline(str(path), sched, "CPU", props)
        self._ids = itertools.count()
        self._inbox: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="nat-ray-openvino", daemon=True)
        self._thread.start()

    def precision(self) -> str:
        """The arithmetic the replies are computed in, its name first (as every engine's), and why."""
        if self.dtype != "auto":
            return f"{self.dtype} (policy.dtype: {self.dtype}; inference precision and KV cache)"
        import openvino as ov

        hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()  # what this CPU's plugin does
        name = _OV_TYPES.get(hint, hint)
        return f"{name} (policy.dtype: auto -> OpenVINO's CPU default here; KV cache as the IR sets it)"

    def _config(self, params: SamplingParams) -> Any:
        gc = self._og.GenerationConfig()
        gc.max_new_tokens = params.max_tokens
        # no gc.stop_strings: _loop stops a reply at its stop string itself (hits_stop, as every engine), and OpenVINO
        # GenAI 2026.4's own matching detokenizes in the sampler's threads, where it deadlocked a study's eval: the
        # sampler waited for ever on a detokenizer request none held (every thread idle, docs/results.md)
        gc.eos_token_id = self.tokenizer.eos_token_id
        if params.temperature > 0:
            gc.do_sample = True
            gc.temperature = params.temperature
            gc.top_p = params.top_p
            gc.top_k = 50  # generate()'s default: engines sample alike
            if params.seed is not None:
                gc.rng_seed = params.seed
        return gc

    async def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        import numpy as np
        import openvino as ov

        ids = chat_token_ids(self.tokenizer, messages)
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        tensor = ov.Tensor(np.asarray([ids], dtype=np.int64))
        self._inbox.put((tensor, len(ids), self._config(params), params, loop, done))
        return await done

    def _loop(self) -> None:
        running: list[_Running] = []
        stopped_any = False  # a request stopped early leaves the scheduler (and frees its blocks) at the next step
        while True:
            try:
                while True:
                    item = self._inbox.get(block=not running and not stopped_any)
                    if item is None:
                        return
                    tensor, n, gc, params, loop, done = item
                    running.append(_Running(self._pipe.add_request(next(self._ids), tensor, gc), n, params, loop, done))
            except queue.Empty:
                pass
            try:
                self._pipe.step()
                stopped_any = False
            except Exception as exc:  # a failed step fails its requests, not the engine
                for r in running:
                    settle_threadsafe(r.loop, r.done, exc)
                running = []
                continue
            still = []
            for r in running:
                if r.handle.can_read():  # the tokens since the last read
                    r.tokens += [int(t) for t in r.handle.read()[0].generated_ids]
                tail = self.tokenizer.decode(r.tokens[-STOP_WINDOW:], skip_special_tokens=True)
                stopped = hits_stop(tail, len(r.tokens), r.params.stop)  # also where one begins in the prompt
                running_now = r.handle.get_status() == self._og.GenerationStatus.RUNNING
                if running_now and not stopped:
                    still.append(r)
                    continue
                if running_now:
                    r.handle.stop()
                    stopped_any = True
                tokens = [t for t in r.tokens if t != self.tokenizer.eos_token_id]
                text = trim_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), r.params.stop)
                settle_threadsafe(r.loop, r.done, Completion(text, r.prompt_tokens, len(tokens)))
            running = still

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=30)
