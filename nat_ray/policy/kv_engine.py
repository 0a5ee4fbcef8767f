"""Continuous batching that keeps each conversation's KV cache between its turns (``policy.batching: cached``).

An agent episode calls the policy once per turn with the whole conversation so far; the next call's prompt is the
previous prompt, the reply, and the tool's observation. The static engine prefills all of it again every turn, and
every episode prefills the task's long instruction prompt again. Here:

- a finished request leaves its KV cache (prompt + reply) in a :class:`PrefixStore`; a new request reuses the cache
  of the stored sequence sharing its longest token prefix, so a turn prefills only the observation and the next
  header, and an episode's first turn prefills only what follows the task prompt shared with earlier episodes;
- sequences decode together in slots of one preallocated cache, each at its own length (left-aligned, masked per
  row), so a sequence that stops leaves the batch at once and a waiting one takes its slot at the next step, without
  copying the others;
- a long prefix that several conversations share (a task's instructions, found where two prompts part ways) is
  pinned: kept once, outside the slots, and read once per decode step for all the rows that start with it
  (:mod:`nat_ray.policy.cascade`); a row's slot holds only what follows it.

Plain torch over a transformers causal LM (its forward with a 4-D mask and per-row positions); :class:`HFEngine`
drives it from one thread. Sampling matches ``generate``'s defaults (temperature, top-k 50, top-p).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from nat_ray.policy.base import STOP_WINDOW, Completion, SamplingParams, hits_stop, trim_at_stop
from nat_ray.policy.cascade import KV, NAME, Cascade
from nat_ray.policy.prefix_store import Match, PrefixStore

_PREFILL_TOKENS = 4096  # prompt tokens prefilled in one forward at most (bounds its memory and the others' wait)
_PIN_MIN = 128  # a shared prefix shorter than this is not worth a cascade group of its own
_PIN_BLOCK = 64  # pins end on a multiple of this, so prompts that share a few tokens past a task prompt share its pin
_PINS = 8  # pinned prefixes kept at most (least recently used, unused by any row, goes first)
_FORWARD_TOKENS = 16  # what one more prefill forward costs, in padded tokens (its fixed per-layer work)


def prefill_parts(new: list[int], forward_cost: int = _FORWARD_TOKENS) -> list[list[int]]:
    """Indices of ``new`` (each request's tokens to prefill) cut into forwards that cost least: a forward costs its
    rows times its longest plus ``forward_cost``. In an agent's eval, an episode's first turn prefills its question
    (~80 tokens) and a later turn only the observation (~15): one forward for both paid ~30% padding.
    """
    order = sorted(range(len(new)), key=lambda i: new[i])
    best = [0] + [0] * len(order)  # best[j]: least cost of the first j requests in length order
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        best[j], cut[j] = min((best[i] + (j - i) * new[order[j - 1]] + forward_cost, i) for i in range(j))
    parts, j = [], len(order)
    while j:
        parts.append(order[cut[j] : j])
        j = cut[j]
    return parts[::-1]


class SlotCache(DynamicCache):
    """Rows of a preallocated cache, each written at its own next column (transformers' caches append one column
    for the whole batch)."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], rows: int, write_at: torch.Tensor):
        super().__init__()
        self._k, self._v = keys, values
        self._rows = torch.arange(rows)
        self._at = write_at
        self._len = int(write_at.max()) + 1

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        k, v = self._k[layer_idx], self._v[layer_idx]
        k[self._rows, :, self._at] = key_states[:, :, 0]
        v[self._rows, :, self._at] = value_states[:, :, 0]
        n = len(self._rows)
        return k[:n, :, : self._len], v[:n, :, : self._len]


@dataclass
class Request:
    ids: torch.Tensor  # prompt token ids
    params: SamplingParams
    done: Callable[[Completion | BaseException], None]  # called once, from the engine's thread
    gen: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None


class KVBatcher:
    """The decode loop: admit waiting requests into free slots, one batched decode step, retire finished rows."""

    def __init__(
        self, model: Any, tokenizer: Any, max_batch_size: int, store_tokens: int = 65536, top_k: int = 50
    ) -> None:
        self.model, self.tok = model, tokenizer
        self.max_batch_size = max_batch_size
        self.top_k = top_k
        self.store = PrefixStore(store_tokens)
        cfg = model.config
        self._layers = cfg.num_hidden_layers
        self._kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self._head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self._context = getattr(cfg, "max_position_embeddings", 4096) or 4096
        self._dtype = next(model.parameters()).dtype
        self._device = next(model.parameters()).device
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._cap = 0
        self._active: list[Request] = []  # row i of the slots
        self._lengths = torch.zeros(0, dtype=torch.long)  # tokens in each row's cache
        self._next_tokens: list[int] = []  # each row's sampled, not yet fed token
        self._pins: OrderedDict[int, tuple[torch.Tensor, KV]] = OrderedDict()  # id -> (tokens, KV), LRU order
        self._pin_ids = 0
        self._row_pin: list[int] = []  # each row's pinned prefix (-1: none); its slot holds what follows it
        self._offset = torch.zeros(0, dtype=torch.long)  # tokens of each row's pinned prefix
        model.set_attn_implementation(NAME)
        self._inbox: queue.Queue[Request | None] = queue.Queue()
        self.steps = 0
        self.pinned_rows = 0  # rows admitted on a pinned prefix, for metrics
        self._thread = threading.Thread(target=self._loop, name="nat-ray-kv-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
        self._inbox.put(request)

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the loop (engine thread)

    def _loop(self) -> None:
        waiting: list[Request] = []
        while True:
            block = not self._active and not waiting
            try:
                while True:
                    item = self._inbox.get(block=block)
                    block = False
                    if item is None:
                        self._fail_all(waiting, RuntimeError("engine closed"))
                        return
                    waiting.append(item)
            except queue.Empty:
                pass
            try:
                with torch.inference_mode():
                    while waiting and len(self._active) < self.max_batch_size:
                        group = self._group(waiting)
                        try:
                            self._admit(group)
                        except Exception as exc:  # requests that cannot start (too long) fail, not the batch
                            for r in group:
                                if r not in self._active:
                                    r.done(exc)
                            if any(r in self._active for r in group):
                                raise
                    if self._active:
                        self._step()
            except Exception as exc:  # a failed decode step fails the rows in it, not the engine
                self._fail_all([], exc)

    def _group(self, waiting: list[Request]) -> list[Request]:
        """The next requests to prefill together: as many as free slots and the token budget allow. With nothing
        stored yet, the first goes alone: its prompt (a task's instructions) is then shared by the rest."""
        free = self.max_batch_size - len(self._active)
        if not len(self.store):
            free = 1
        group, tokens = [], 0
        while waiting and len(group) < free and (not group or tokens + len(waiting[0].ids) <= _PREFILL_TOKENS):
            r = waiting.pop(0)
            if len(r.ids) + r.params.max_tokens > self._context:
                r.done(ValueError(f"{len(r.ids)} prompt tokens + max_tokens {r.params.max_tokens} exceed the model's "
                                  f"context ({self._context} tokens)"))  # fmt: skip
                continue
            tokens += len(r.ids)
            group.append(r)
        for r in group:
            if r.params.seed is not None:
                r.generator = torch.Generator(device=self._device).manual_seed(r.params.seed)
        return group

    def _fail_all(self, waiting: list[Request], exc: BaseException) -> None:
        for r in self._active + waiting:
            r.done(exc)
        self._active, self._next_tokens, self._row_pin = [], [], []
        self._lengths = torch.zeros(0, dtype=torch.long)
        self._offset = torch.zeros(0, dtype=torch.long)
        waiting.clear()

    def _ensure_capacity(self, rows: int, tokens: int) -> None:
        if tokens <= self._cap and self._keys and self._keys[0].shape[0] >= rows:
            return
        cap = max(256, self._cap)
        while cap < tokens:
            cap *= 2
        cap = min(cap, self._context)
        if tokens > cap:
            raise ValueError(f"conversation of {tokens} tokens exceeds the model's context ({self._context})")
        shape = (self.max_batch_size, self._kv_heads, cap, self._head_dim)
        keys = [torch.zeros(shape, dtype=self._dtype, device=self._device) for _ in range(self._layers)]
        values = [torch.zeros(shape, dtype=self._dtype, device=self._device) for _ in range(self._layers)]
        n, old = len(self._active), self._cap
        for i in range(self._layers if n and old else 0):
            keys[i][:n, :, :old] = self._keys[i][:n]
            values[i][:n, :, :old] = self._values[i][:n]
        self._keys, self._values, self._cap = keys, values, cap

    def _admit(self, reqs: list[Request]) -> None:
        """Prefill a group of requests, each on top of its longest stored prefix, into free slots: in forwards of
        similar new lengths (:func:`prefill_parts`), since every row of one forward is padded to its longest."""
        looks = [self.store.lookup(r.ids) for r in reqs]
        for part in prefill_parts([len(r.ids) - look.tokens for r, look in zip(reqs, looks, strict=True)]):
            self._prefill([reqs[i] for i in part], [looks[i] for i in part])

    def _prefill(self, reqs: list[Request], looks: list[Match]) -> None:
        """One forward over requests and their stored prefixes (``looks``).

        Row layout of the prefill: [pad][reused prefix][pad][new tokens]: the last column is every row's last
        prompt token, whose logits give its first reply token; pads are masked (a pad query sees itself only).
        """
        m = len(reqs)
        width_c = max(look.tokens for look in looks)
        width_s = max(len(r.ids) - look.tokens for r, look in zip(reqs, looks, strict=True))
        total = width_c + width_s
        dev = self._device
        valid = torch.zeros(m, total, dtype=torch.bool, device=dev)
        ids = torch.full((m, width_s), self.tok.pad_token_id or 0, dtype=torch.long, device=dev)
        pos = torch.zeros(m, width_s, dtype=torch.long, device=dev)
        shape = (m, self._kv_heads, width_c, self._head_dim)
        past = [(torch.zeros(shape, dtype=self._dtype, device=dev), torch.zeros(shape, dtype=self._dtype, device=dev))
                for _ in range(self._layers if width_c else 0)]  # fmt: skip
        for j, (r, (c, kv, _)) in enumerate(zip(reqs, looks, strict=True)):
            s = len(r.ids) - c
            for (pk, pv), (k, v) in zip(past, kv or [], strict=False):
                pk[j, :, width_c - c :] = k
                pv[j, :, width_c - c :] = v
            valid[j, width_c - c : width_c] = True
            valid[j, total - s :] = True
            ids[j, width_s - s :] = r.ids[c:]
            pos[j, width_s - s :] = torch.arange(c, len(r.ids))
        cols = torch.arange(total, device=dev)
        query_cols = width_c + torch.arange(width_s, device=dev)
        mask = valid[:, None, :] & (cols[None, None, :] <= query_cols[None, :, None])
        mask |= cols[None, None, :] == query_cols[None, :, None]
        cache = DynamicCache(ddp_cache_data=past) if past else None
        out = self.model(
            input_ids=ids, attention_mask=mask[:, None], position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1
        )
        keeps = [valid[j].nonzero().squeeze(1) for j in range(m)]
        pins: list[int] = []
        for j, (r, look, keep) in enumerate(zip(reqs, looks, keeps, strict=True)):
            kv = [(la.keys[j][:, keep], la.values[j][:, keep]) for la in out.cache.layers]
            shared = 0 if look.whole else look.tokens  # a turn of the same conversation shares it with no other
            pins.append(self._pin_for(r.ids, shared, kv, in_use={*self._row_pin, *pins}))
        offsets = [len(self._pins[p][0]) if p >= 0 else 0 for p in pins]
        longest = max(len(r.ids) - o + r.params.max_tokens + 1 for r, o in zip(reqs, offsets, strict=True))
        self._ensure_capacity(len(self._active) + m, longest)
        first = self._sample(out.logits[:, -1], reqs)
        for j, r in enumerate(reqs):
            n, row, off = len(r.ids), len(self._active), offsets[j]
            keep = keeps[j][off:]
            for i, layer in enumerate(out.cache.layers):
                self._keys[i][row, :, : n - off] = layer.keys[j][:, keep]
                self._values[i][row, :, : n - off] = layer.values[j][:, keep]
            self._active.append(r)
            self._row_pin.append(pins[j])
            self.pinned_rows += pins[j] >= 0
            self._offset = torch.cat([self._offset, torch.tensor([off])])
            self._lengths = torch.cat([self._lengths, torch.tensor([n - off])])
            self._next_tokens.append(first[j])
            if looks[j].tokens < n - 1:  # later requests (the rest of a task's first turns) can share this prompt now
                self.store.put(r.ids, self._row_kv(row, n))
        self._retire()

    def _pin_for(self, ids: torch.Tensor, shared: int, kv: KV, in_use: set[int]) -> int:
        """The pinned prefix this prompt starts with (the longest), or a new one where it shares ``shared`` tokens
        with another stored conversation (the two part ways there: a shared task prompt); -1 for none. A prefix only
        one conversation has is never pinned: a group of one row reads it no less often, at two more matmuls per
        layer and step (a math eval's later turns had made every row a group of its own: 66 matmuls per layer)."""
        best, best_len = -1, 0
        for key, (tokens, _) in self._pins.items():
            n = len(tokens)
            if best_len < n < len(ids) and bool((tokens == ids[:n]).all()):
                best, best_len = key, n
        if best >= 0:
            self._pins.move_to_end(best)
            return best
        n = shared // _PIN_BLOCK * _PIN_BLOCK
        if n < _PIN_MIN:
            return -1
        for key in [k for k in self._pins if k not in in_use][: max(0, len(self._pins) + 1 - _PINS)]:
            del self._pins[key]
        self._pins[self._pin_ids] = (ids[:n].clone(), [(k[:, :n].clone(), v[:, :n].clone()) for k, v in kv])
        self._pin_ids += 1
        return self._pin_ids - 1

    def _step(self) -> None:
        # every row's room (prompt + max_tokens) was reserved when it was admitted
        at = self._lengths.to(self._device)
        cache = SlotCache(self._keys, self._values, len(self._active), at)
        width = int(self._lengths.max()) + 1
        mask = (torch.arange(width, device=self._device)[None, :] <= at[:, None])[:, None, None, :]
        ids = torch.tensor(self._next_tokens, device=self._device).unsqueeze(1)
        pins = torch.tensor(self._row_pin)
        groups = [int(p) for p in pins.unique() if p >= 0]
        cascade = Cascade([self._pins[p][1] for p in groups], [(pins == p).nonzero().squeeze(1) for p in groups])
        pos = (self._offset.to(self._device) + at).unsqueeze(1)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, nat_ray_cascade=cascade
        )
        self.steps += 1
        self._lengths += 1
        for r, t in zip(self._active, self._next_tokens, strict=True):
            r.gen.append(t)
        self._next_tokens = self._sample(out.logits[:, -1], self._active)
        self._retire()

    def _sample(self, logits: torch.Tensor, requests: list[Request]) -> list[int]:
        logits = logits.float()
        picked = logits.argmax(dim=-1).tolist()
        for i, r in enumerate(requests):
            p = r.params
            if p.temperature <= 0:
                continue
            row = logits[i] / p.temperature
            top = torch.topk(row, min(self.top_k, row.numel()))
            probs = torch.softmax(top.values, dim=-1)
            if p.top_p < 1.0:
                keep = torch.cumsum(probs, dim=-1) - probs < p.top_p
                probs = probs * keep
            choice = torch.multinomial(probs, 1, generator=r.generator)
            picked[i] = int(top.indices[choice])
        return picked

    def _retire(self) -> None:
        """Finish rows the last sampled token ends (as ``generate`` does: eos, a stop string, max_tokens); the
        last row moves into a freed slot."""
        eos = self.tok.eos_token_id
        i = 0
        while i < len(self._active):
            r, nxt = self._active[i], self._next_tokens[i]
            if nxt == eos:
                self._finish(i)
                continue
            cand = [*r.gen, nxt]
            tail = self.tok.decode(cand[-STOP_WINDOW:], skip_special_tokens=True)
            if len(cand) >= r.params.max_tokens or hits_stop(tail, len(cand), r.params.stop):
                r.gen.append(nxt)
                self._finish(i)
                continue
            i += 1

    def _row_kv(self, row: int, n: int) -> KV:
        """A copy of one row's first ``n`` tokens of conversation, its pinned prefix included (the slot is reused)."""
        off, pin = int(self._offset[row]), self._row_pin[row]
        slots = zip(self._keys, self._values, strict=True)
        if pin < 0:
            return [(k[row, :, :n].clone(), v[row, :, :n].clone()) for k, v in slots]
        return [(torch.cat([pk, k[row, :, : n - off]], dim=1), torch.cat([pv, v[row, :, : n - off]], dim=1))
                for (pk, pv), (k, v) in zip(self._pins[pin][1], slots, strict=True)]  # fmt: skip

    def _finish(self, i: int) -> None:
        r = self._active[i]
        n = int(self._lengths[i] + self._offset[i])
        tokens = torch.cat([r.ids, torch.tensor(r.gen, dtype=r.ids.dtype)])[:n]
        self.store.put(tokens, self._row_kv(i, n))
        gen = [t for t in r.gen if t != self.tok.eos_token_id]
        text = trim_at_stop(self.tok.decode(gen, skip_special_tokens=True), r.params.stop)
        last = len(self._active) - 1
        if i != last:  # keep the rows contiguous: the last row takes the freed slot
            m = int(self._lengths[last])
            for k, v in zip(self._keys, self._values, strict=True):
                k[i, :, :m] = k[last, :, :m]
                v[i, :, :m] = v[last, :, :m]
            self._active[i] = self._active[last]
            self._next_tokens[i] = self._next_tokens[last]
            self._lengths[i] = self._lengths[last]
            self._offset[i] = self._offset[last]
            self._row_pin[i] = self._row_pin[last]
        self._active.pop()
        self._next_tokens.pop()
        self._row_pin.pop()
        self._lengths = self._lengths[:last]
        self._offset = self._offset[:last]
        r.done(Completion(text=text, prompt_tokens=len(r.ids), completion_tokens=len(gen)))
