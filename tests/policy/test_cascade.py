"""Cascade decode attention equals plain attention over each row's whole sequence (shared prefix + own tokens)."""

from __future__ import annotations

import torch

from nat_ray.policy.cascade import Cascade, cascade_attention


class _Layer(torch.nn.Module):
    layer_idx = 0
    num_key_value_groups = 2  # read by transformers' SDPA path


def test_cascade_attention_equals_attention_over_prefix_and_own_tokens() -> None:
    torch.manual_seed(0)
    rows, heads, kv_heads, dim, own = 5, 4, 2, 8, 7
    q = torch.randn(rows, heads, 1, dim, dtype=torch.float64)
    k = torch.randn(rows, kv_heads, own, dim, dtype=torch.float64)
    v = torch.randn(rows, kv_heads, own, dim, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1, 6])  # each row's own tokens; the rest of its slot is masked
    mask = (torch.arange(own)[None, :] < lengths[:, None])[:, None, None, :]
    prefix = {n: (torch.randn(kv_heads, n, dim).double(), torch.randn(kv_heads, n, dim).double()) for n in (11, 4)}
    groups = {11: torch.tensor([0, 2, 3]), 4: torch.tensor([4])}  # row 1 has no shared prefix
    cascade = Cascade([[prefix[n]] for n in groups], list(groups.values()))
    got, _ = cascade_attention(_Layer(), q, k, v, mask, scaling=0.3, nat_ray_cascade=cascade)
    for r in range(rows):
        n = next((p for p, idx in groups.items() if r in idx.tolist()), 0)
        pk, pv = prefix[n] if n else (k.new_zeros(kv_heads, 0, dim), k.new_zeros(kv_heads, 0, dim))
        keys = torch.cat([pk, k[r, :, : lengths[r]]], dim=1).repeat_interleave(heads // kv_heads, dim=0)
        values = torch.cat([pv, v[r, :, : lengths[r]]], dim=1).repeat_interleave(heads // kv_heads, dim=0)
        want = torch.softmax(q[r] @ keys.transpose(-1, -2) * 0.3, dim=-1) @ values  # [heads, 1, dim]
        torch.testing.assert_close(got[r, 0], want[:, 0])


def test_without_a_cascade_it_is_sdpa() -> None:
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    mask = torch.ones(2, 1, 3, 3, dtype=torch.bool).tril()
    got, _ = cascade_attention(_Layer(), q, k, v, mask, scaling=8**-0.5)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(got, want.transpose(1, 2))
