"""Memory of a training worker: measured (peak resident set) and estimated before any worker starts.

The estimate is deliberately simple — weights, gradients and AdamW states (sharded over the workers under ZeRO-3),
the activations the backward pass keeps per token, the loss chunk's logits, and a fixed process overhead — with
per-token constants fitted to measured peaks of SmolLM2-135M on CPU (``docs/benchmarks.md``). It exists to refuse a
configuration that cannot fit with a message that names the knobs, before minutes of start-up, not to plan to the
megabyte.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from nat_ray.errors import NatRayError

GB = 1024**3
PROCESS_OVERHEAD = 1.4 * GB  # torch, transformers, Ray worker, gloo buffers: the measured peaks fit ~1.4 GB


def knobs(micro_batch_size: int, max_length: int, gradient_checkpointing: bool, workers: int) -> str:
    """The settings that lower a worker's peak memory, with their values now."""
    ckpt = (
        "train.gradient_checkpointing is already on"
        if gradient_checkpointing
        else "set train.gradient_checkpointing=true"
    )
    return (
        f"lower train.micro_batch_size (now {micro_batch_size}) or train.max_length (now {max_length}), {ckpt}, "
        f"or use fewer workers (train.num_workers, now {workers})"
    )


class TrainingMemoryError(NatRayError):
    """The run does not fit (estimated before start, or a worker was killed for memory)."""


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory every ``interval`` seconds in a daemon thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=1)
        self.peak = max(self.peak, rss_bytes())
        return self.peak


@dataclass(frozen=True)
class ModelShape:
    params: int
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    heads: int = 0

    @classmethod
    def from_config(cls, config) -> ModelShape:  # type: ignore[no-untyped-def]
        h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        v = config.vocab_size
        kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
        per_layer = h * h * 2 + 2 * h * kv * head_dim + 3 * h * i
        tied = getattr(config, "tie_word_embeddings", False)
        params = n * per_layer + v * h * (1 if tied else 2)
        return cls(params, hidden=h, intermediate=i, layers=n, vocab=v, heads=config.num_attention_heads)


def estimate_peak_bytes(
    shape: ModelShape,
    strategy: str,
    workers: int,
    micro_batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool,
    chunk_tokens: int | None,
    shard_optimizer: bool = True,
    bytes_per_param: int = 4,
    autocast_bf16: bool = False,
    eager_attention: bool = False,
) -> int:
    """Peak resident memory of one worker (fp32 on CPU unless ``bytes_per_param`` says otherwise). Under bf16
    autocast the step also holds a bf16 copy of each weight it casts (measured +0.44 GB for SmolLM2); activations are
    still counted as fp32, which over-counts them there."""
    p = shape.params
    states = 4 * p * 4  # fp32 master weights, gradients, two AdamW moments
    # ZeRO-3 shards the states, and a worker also holds gathered working copies and DeepSpeed's flat partition
    # buffers; DDP keeps weights and gradients (in its buckets) on every worker, the AdamW moments sharded or not.
    if strategy == "deepspeed":
        model = states / workers + 3 * p * bytes_per_param
    else:
        model = 8 * p + 8 * p / (workers if shard_optimizer else 1)
    tokens = micro_batch_size * seq_len
    # Saved activations per token and layer (Llama-style block, fp32), fitted to SmolLM2 runs on CPU: ~8 hidden-sized
    # and ~3 MLP-sized tensors (measured 5.56 GB for ZeRO-3 on 1,500-token sequences without checkpointing).
    per_layer = (8 * shape.hidden + 3 * shape.intermediate) * 4
    if gradient_checkpointing:
        act = tokens * (shape.layers * shape.hidden * 4 + per_layer)
    else:
        act = tokens * shape.layers * per_layer
    if eager_attention:
        # eager attention keeps each layer's attention weights for the backward pass: fp32 softmax and a bf16 copy
        # (checkpointing: one layer's at a time)
        act += micro_batch_size * shape.heads * seq_len**2 * 6 * (1 if gradient_checkpointing else shape.layers)
    chunk = tokens if chunk_tokens is None else min(chunk_tokens, tokens)  # None: every labelled position at once
    head = 3 * chunk * shape.vocab * 4  # logits, softmax and its gradient of one chunk
    cast = 2 * p if autocast_bf16 else 0
    return int(PROCESS_OVERHEAD + model + act + head + cast)


def check_fits(estimate: int, workers_here: int, available: int, what: str, advice: str) -> None:
    """Refuse a run whose workers on this machine would need more than 90% of the memory available now."""
    need = estimate * workers_here
    if need > 0.9 * available:
        raise TrainingMemoryError(
            f"{what} needs about {estimate / GB:.1f} GB per worker x {workers_here} = {need / GB:.1f} GB, but this "
            f"machine has {available / GB:.1f} GB available: {advice} (train.check_memory=false skips this estimate)"
        )
