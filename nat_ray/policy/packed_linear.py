"""Float32 linear layers on oneDNN with their weights reordered once, for the transformers engine on a CPU.

PyTorch runs a float32 ``nn.Linear`` on a CPU through MKL's ``sgemm``, which packs the weight matrix again on every
call and, for the few rows of a decode step, runs far below the CPU's rate: on the AVX2-only AMD EPYC of
docs/benchmarks.md, SmolLM2's LM head (576 x 49,152) ran at 7 GFLOPS for 8 rows and 30 for 64, against 40 and 68
through oneDNN on a weight reordered once (``mkldnn._reorder_linear_weight`` + ``mkldnn._linear_pointwise``, the
kernels inductor's CPU freezing uses). On that CPU oneDNN's rows also do not depend on how many share the call (a
row of 64 equals the same row alone, bit for bit; MKL's do not below 8 rows), which is what ``eval.repeatable`` needs
of a batched decode (not measured on AVX-512 / AMX CPUs). bf16 linears already run on oneDNN and are left alone.
"""

from __future__ import annotations

import torch


class PackedLinear(torch.nn.Module):
    """``nn.Linear``'s forward on a oneDNN-reordered copy of its float32 weight (inference only: no gradient).

    ``weight`` stays the original tensor (a tied LM head shares it with the embedding, and transformers reads it);
    the reordered copy is what the matmul reads."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def can_pack(model: torch.nn.Module) -> bool:
    """float32 weights on the CPU, and a torch built with oneDNN."""
    param = next(model.parameters())
    ops = hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    return param.device.type == "cpu" and param.dtype == torch.float32 and torch.backends.mkldnn.is_available() and ops


def pack_linears(model: torch.nn.Module) -> int:
    """Replace every float32 ``nn.Linear`` of ``model`` (on the CPU) by a :class:`PackedLinear`; the count replaced."""
    if not can_pack(model):
        return 0
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, PackedLinear(child))
                count += 1
    return count
