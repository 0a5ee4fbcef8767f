"""What makes a training step fast on a CPU without changing what it computes: regional ``torch.compile`` and the
optimizer's fused step (``docs/benchmarks.md``, training part 5, has the profile these come from).

Regional compilation: each decoder layer is compiled on its own (``nn.Module.compile``), not the whole model. The
layers share one code path, so the compiler builds one graph for all of them (a tenth of the whole model's compile
time), and the loss's boolean indexing, which would break a whole-model graph, stays outside. ``dynamic=True``: one
graph for every sequence length, instead of a recompile per micro-batch width.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from nat_ray.errors import InputError


def decoder_layers(lm: Any) -> list[Any]:
    """The repeated blocks of a Hugging Face causal LM (``model.layers`` for Llama, Qwen, Mistral, SmolLM2 …)."""
    base = getattr(lm, lm.base_model_prefix, None)
    layers = getattr(base, "layers", None) or getattr(base, "h", None)
    if layers is None:
        raise InputError(f"train.compile: {type(lm).__name__} has no list of decoder layers to compile")
    return list(layers)


def compile_layers(lm: Any) -> int:
    """Compile every decoder layer in place (the first forward pass compiles); the number of layers."""
    layers = decoder_layers(lm)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def check_compiler() -> None:
    """torch.compile on a CPU writes C++ and builds it: refuse before any worker starts where no compiler is."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("c++") is None:
        raise InputError(
            f"train.compile: true needs a C++ compiler on the training machines ({cxx} not found): install one "
            "(Debian: apt-get install g++) or set train.compile=false"
        )


def adamw_kwargs(cuda: bool) -> dict[str, bool]:
    """AdamW's step: the fused kernel (one pass over each tensor, no whole-model temporaries) on a CPU; the
    multi-tensor path on a GPU."""
    return {"foreach": True} if cuda else {"fused": True}
