"""An in-cluster policy engine on transformers: batched generation from a local model folder, CPU or GPU.

Concurrent ``generate`` calls (many episodes in many env workers) are gathered for a short window and run as one
left-padded ``model.generate`` batch per sampling setting, using the model's own chat template and stopping at the
ReAct stop string. ``actors.engine`` wraps this class as a Ray actor; a fine-tuned checkpoint folder works the same.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.models import resolve_model_path
from nat_ray.policy.base import Completion, SamplingParams, trim_at_stop


class HFEngine:
    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        max_batch_size: int = 16,
        batch_window_s: float = 0.01,
        num_threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(str(model))
        config = AutoConfig.from_pretrained(path)
        if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
            raise InputError(f"{path}: not a causal LM (architectures: {config.architectures})")
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.model_name = str(path)
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None
        self.batches = 0  # generate() batches run, for tests and metrics

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
