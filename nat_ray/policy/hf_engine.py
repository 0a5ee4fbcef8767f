"""An in-cluster policy engine on transformers: batched generation from a local model folder, CPU or GPU.

Two ways to share the model between concurrent episodes (``batching``), measured side by side in
``benchmarks/eval.py``:

- ``static``: calls arriving within a short window run as one left-padded ``model.generate`` batch per sampling
  setting, to the longest reply. On 2 CPU cores it is the faster one (docs/benchmarks.md).
- ``cached``: this project's continuous batching that keeps each conversation's KV cache between its turns and
  shares the task prompt's cache between episodes (``nat_ray.policy.kv_engine``): a turn prefills only what is new.
- ``continuous``: transformers' own continuous batching (what ``transformers serve --continuous-batching`` runs):
  requests join and leave the running batch token by token, with paged KV blocks shared between prompts that start
  alike; each reply streams back and is cut at the ReAct stop string as soon as it appears.

Both use the model's own chat template. ``actors.engine`` wraps this class as a Ray actor; a fine-tuned checkpoint
folder works the same.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.hardware import resolve_bf16
from nat_ray.models import resolve_model_path
from nat_ray.policy.base import (
    Completion,
    SamplingParams,
    chat_token_ids,
    hits_stop,
    settle_threadsafe,
    trim_at_stop,
)

BATCHING = ("cached", "static", "continuous")


class HFEngine:
    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        max_batch_size: int = 16,
        batch_window_s: float = 0.01,
        num_threads: int | None = None,
        batching: str = "static",
        dtype: str = "auto",
        pack: bool = True,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from nat_ray.policy.packed_linear import pack_linears

        path = resolve_model_path(str(model))
        config = AutoConfig.from_pretrained(path)
        if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
            raise InputError(f"{path}: not a causal LM (architectures: {config.architectures})")
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self._precision = resolve_bf16(dtype, "policy.dtype", cuda=self.device.startswith("cuda"))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = torch.bfloat16 if self._precision.bf16 else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(self.device).eval()
        # float32 on a CPU: oneDNN on weights reordered once (faster than MKL's per-call packing, and a row's result
        # does not depend on its batch); `generate` and every batching mode run the same layers
        self.packed_linears = pack_linears(self.model) if pack else 0  # pack=False: torch's own (a benchmark's row)
        self.model_name = str(path)
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None
        self.batches = 0  # generate() batches run, for tests and metrics
        if batching not in BATCHING:
            raise InputError(f"batching {batching!r}: choose one of {', '.join(BATCHING)}")
        self.batching = batching
        self._cb = None  # the continuous-batching manager, started on the first call
        self._cb_ids = 0
        self._kv = None  # the KV-reusing batcher, started on the first call

    def precision(self) -> str:
        """The weights' dtype and why it was chosen, e.g. ``bfloat16 (policy.dtype: auto -> bfloat16 (CPU has …))``."""
        return f"{self._precision.name} ({self._precision.reason})"

    def generate_batch(self, conversations: list[list[dict[str, str]]], params: SamplingParams) -> list[Completion]:
        import torch

        tok = self.tokenizer
        prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs: dict = {"max_new_tokens": params.max_tokens, "pad_token_id": tok.pad_token_id}
        if params.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        else:
            kwargs |= {"do_sample": False}
        if params.stop:
            kwargs |= {"stop_strings": list(params.stop), "tokenizer": tok}
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        self.batches += 1
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        completions = []
        for row, prompt_len in zip(new_tokens, enc["attention_mask"].sum(dim=1).tolist(), strict=True):
            ids = row.tolist()
            if tok.eos_token_id in ids:
                ids = ids[: ids.index(tok.eos_token_id)]
            text = trim_at_stop(tok.decode(ids, skip_special_tokens=True), params.stop)
            completions.append(Completion(text=text, prompt_tokens=int(prompt_len), completion_tokens=len(ids)))
        return completions

    async def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        if self.batching == "continuous":
            return await self._generate_continuous(messages, params)
        if self.batching == "cached":
            return await self._generate_cached(messages, params)
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._run_batches())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, params, future))
        return await future

    async def _run_batches(self) -> None:
        assert self._queue is not None
        while True:
            items = [await self._queue.get()]
            await asyncio.sleep(self.batch_window_s)  # let concurrent callers join this batch
            while len(items) < self.max_batch_size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            groups: dict[SamplingParams, list] = defaultdict(list)
            for item in items:
                groups[item[1]].append(item)
            for params, group in groups.items():
                try:
                    results = await asyncio.to_thread(self.generate_batch, [g[0] for g in group], params)
                except Exception as exc:  # one bad batch fails its callers, not the engine
                    for g in group:
                        if not g[2].done():
                            g[2].set_exception(exc)
                    continue
                for g, result in zip(group, results, strict=True):
                    if not g[2].done():
                        g[2].set_result(result)

    # ------------------------------------------------------------------ continuous batching

    def _manager(self):  # type: ignore[no-untyped-def]
        if self._cb is None:
            from transformers import GenerationConfig
            from transformers.generation.configuration_utils import ContinuousBatchingConfig

            tok = self.tokenizer
            # per-request temperature / top_p / top_k only exist where the defaults here make a processor for them
            # (a default of 1.0 makes none): every request passes its own
            config = GenerationConfig(
                do_sample=True,
                temperature=0.5,
                top_p=0.999,
                top_k=50,  # generate()'s default too: the two batching modes sample alike
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
            # The KV cache is sized from free GPU memory by default; on CPU that takes most of the machine's RAM. Size
            # it for max_batch_size sequences of up to the model's context (capped at 4096 tokens) instead.
            context = min(getattr(self.model.config, "max_position_embeddings", 4096) or 4096, 4096)
            page = 64
            cb = ContinuousBatchingConfig(
                per_request_processors=True,
                max_requests_per_batch=self.max_batch_size,
                page_size=page,
                num_blocks=self.max_batch_size * -(-context // page),
                max_batch_tokens=max(512, self.max_batch_size * 32),
            )
            self._cb = self.model.init_continuous_batching(generation_config=config, continuous_batching_config=cb)
            self._cb.start()
        return self._cb

    async def _generate_continuous(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        tok = self.tokenizer
        ids = chat_token_ids(tok, messages)
        manager = self._manager()
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        self._cb_ids += 1
        rid = f"nat-{self._cb_ids}"
        sampling = (
            {"top_k": 1} if params.temperature <= 0 else {"temperature": params.temperature, "top_p": params.top_p}
        )

        def on_output(out) -> None:  # type: ignore[no-untyped-def]  # on this loop, once per new token
            if done.done():
                return
            if out.error:
                done.set_exception(RuntimeError(f"continuous batching: {out.error}"))
                return
            tokens = [t for t in out.generated_tokens if t != tok.eos_token_id]
            text = tok.decode(tokens, skip_special_tokens=True)
            stopped = hits_stop(text, len(tokens), params.stop)
            if stopped or out.is_finished():
                if stopped and not out.is_finished():
                    manager.cancel_request(rid)  # free its slot now, not at max_tokens
                done.set_result(
                    Completion(
                        text=trim_at_stop(text, params.stop), prompt_tokens=len(ids), completion_tokens=len(tokens)
                    )
                )

        manager.register_result_handler(rid, on_output)
        manager.add_request(ids, request_id=rid, max_new_tokens=params.max_tokens, streaming=True, **sampling)
        return await done

    async def _generate_cached(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        import torch

        from nat_ray.policy.kv_engine import KVBatcher, Request

        if self._kv is None:
            self._kv = KVBatcher(self.model, self.tokenizer, self.max_batch_size)
        ids = chat_token_ids(self.tokenizer, messages)
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        deliver = functools.partial(settle_threadsafe, loop, done)  # called from the batcher's thread
        self._kv.submit(Request(ids=torch.tensor(ids, dtype=torch.long), params=params, done=deliver))
        return await done

    def cache_stats(self) -> dict[str, int]:
        """Prompt tokens asked for and served from kept KV caches (``cached`` batching), decode steps run, rows admitted
        on a pinned shared prefix."""
        if self._kv is None:
            return {"prompt_tokens": 0, "reused_tokens": 0, "steps": 0, "pinned_rows": 0}
        store = self._kv.store
        return {"prompt_tokens": store.prompt_tokens, "reused_tokens": store.reused_tokens, "steps": self._kv.steps,
                "pinned_rows": self._kv.pinned_rows}  # fmt: skip

    def close(self) -> None:
        if self._kv is not None:
            self._kv.close()
            self._kv = None
        if self._cb is not None:
            self._cb.stop(block=True)
            self._cb = None
