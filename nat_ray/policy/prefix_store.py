"""Finished conversations' KV caches, found again by their longest common token prefix (the cached engine's store).

A finished request leaves its cache (prompt + reply) here; the next request of the same conversation, or the first
turn of another episode of the same task, reuses the longest stored prefix and prefills only the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch

from nat_ray.policy.cascade import KV


class Match(NamedTuple):
    """What a lookup found: ``tokens`` of the prompt served from the store, their KV, and whether they are the whole
    of a stored sequence (the same conversation, a turn later) rather than where two conversations part ways."""

    tokens: int
    kv: KV | None
    whole: bool = False


class PrefixStore:
    """Finished sequences' KV caches, least recently used first out, found by longest common token prefix."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int, tuple[torch.Tensor, KV]] = OrderedDict()
        self._tokens = 0
        self._next = 0
        self.reused_tokens = 0  # prompt tokens served from the store, for metrics
        self.prompt_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: torch.Tensor) -> Match:
        """The longest stored prefix of ``ids`` (at most len - 1 tokens: the last is fed to get the next logits)."""
        best, best_key = 0, None
        limit = len(ids) - 1
        for key, (tokens, _) in self._entries.items():
            m = min(len(tokens), limit)
            if m <= best:
                continue
            same = tokens[:m] == ids[:m]
            n = m if bool(same.all()) else int(same.to(torch.int8).argmin())
            if n > best:
                best, best_key = n, key
        self.prompt_tokens += len(ids)
        if best_key is None:
            return Match(0, None)
        self._entries.move_to_end(best_key)
        self.reused_tokens += best
        tokens, kv = self._entries[best_key]
        return Match(best, [(k[:, :best], v[:, :best]) for k, v in kv], whole=best == len(tokens))

    def put(self, ids: torch.Tensor, kv: KV) -> None:
        if len(ids) > self.max_tokens:
            return
        for key, (tokens, _) in list(self._entries.items()):  # an entry the new one extends is superseded by it
            if len(tokens) <= len(ids) and bool((tokens == ids[: len(tokens)]).all()):
                self._drop(key)
        self._entries[self._next] = (ids, kv)
        self._next += 1
        self._tokens += len(ids)
        while self._tokens > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        tokens, _ = self._entries.pop(key)
        self._tokens -= len(tokens)
