"""Decode-step attention for the cached engine: one read of a prompt prefix shared by many rows.

Every episode of a task starts with the same long instruction prompt. Stored once per row, a decode step reads it
once per row per layer: at 24 rows and a 1,500-token prompt that is most of the step's memory traffic, and torch's
CPU SDPA kernel (made for long queries) spends 70% of the step on it (docs/benchmarks.md). Here a step splits each
row's attention in two — the prefix the row shares with others (one copy, its K read once for all of them, as
cascade attention does on GPUs) and the row's own tokens — and merges the two softmaxes by their log-sum-exp. Grouped
query heads are a reshape, never a copy.

Registered with transformers as attention ``nat_ray_cascade``; without a :class:`Cascade` in the call (prefill,
``generate``), it is transformers' SDPA unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "nat_ray_cascade"
KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [kv_heads, tokens, head_dim]


@dataclass
class Cascade:
    """One decode step's sharing: group ``g`` of rows ``rows[g]`` attends to ``prefixes[g]`` before its own slots."""

    prefixes: list[KV]
    rows: list[torch.Tensor]


def cascade_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    nat_ray_cascade: Cascade | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    if nat_ray_cascade is None or query.shape[2] != 1 or attention_mask is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(rows, kv_heads, group, dim)
    # the rows' own tokens: [rows, kv_heads, group, tokens]. Slices of the slot cache take slow strided kernels
    # (2-5x the cost of a copy, benchmarks/eval.py): copy them first
    key = key.contiguous()
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * scale
    scores.masked_fill_(~attention_mask[:, 0, 0, None, None, :], float("-inf"))
    top = scores.amax(-1, keepdim=True)
    weights = torch.exp(scores - top)
    total = weights.sum(-1, keepdim=True)
    out = torch.matmul(weights.to(value.dtype), value).float()
    for prefix, idx in zip(nat_ray_cascade.prefixes, nat_ray_cascade.rows, strict=True):
        pk, pv = prefix[module.layer_idx]  # type: ignore[index]
        n = len(idx)
        qg = q[idx].transpose(0, 1).reshape(kv_heads, n * group, dim)
        ps = torch.matmul(qg, pk.transpose(-1, -2)).float() * scale  # [kv_heads, n * group, prefix]
        ptop = ps.amax(-1, keepdim=True)
        pw = torch.exp(ps - ptop)
        ptotal = pw.sum(-1, keepdim=True).reshape(kv_heads, n, group, 1).transpose(0, 1)
        pout = torch.matmul(pw.to(pv.dtype), pv).float().reshape(kv_heads, n, group, dim).transpose(0, 1)
        ptop = ptop.reshape(kv_heads, n, group, 1).transpose(0, 1)
        mine = top[idx]
        both = torch.maximum(mine, ptop)
        a, b = torch.exp(mine - both), torch.exp(ptop - both)
        out[idx] = out[idx] * a + pout * b
        total[idx] = total[idx] * a + ptotal * b
        top[idx] = both
    out = (out / total).to(query.dtype).reshape(rows, heads, 1, dim)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, cascade_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
