"""The ``train`` section: fine-tuning (``nat-ray train``, the pipeline's train stages), SFT or a preference objective.
Re-exported by :mod:`nat_ray.config`, where the whole run config lives."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from nat_ray.training.objectives import objective_for
from nat_ray.types import StrictModel

# the fields only the preference objectives read: an SFT variant's stage hash leaves them out
PREFERENCE_FIELDS = {"objective", "beta", "desirable_weight", "undesirable_weight", "sft_weight"}
# how fast a model trains, not which model: a train stage's hash leaves them out, so turning them on keeps a run's
# trained models (the kernels' rounding differs, as it does from one machine to another)
SPEED_FIELDS = {"compile", "attn_implementation"}
# how a run survives a stop (resumable checkpoints, retries), not what it computes: a train stage's hash holds them at
# their defaults, so turning checkpoints on for a long run keeps the models already trained
RESILIENCE_FIELDS = {"checkpoint_every", "max_failures"}


class TrainConfig(StrictModel):
    """Fine-tuning, the paper's defaults: 2 epochs, global batch 64, cosine schedule, 3% warm-up, peak LR 5e-5."""

    model: str  # a model folder, or a prepared model name (smollm2)
    data: str | None = None  # a training set from `nat-ray build` (.jsonl or Parquet); the pipeline sets its own
    dev: str | None = None  # held-out positives (a training set): perplexity on their assistant tokens
    out: str | None = None  # default: <out>/checkpoint
    max_length: int = Field(4096, gt=8)
    drop_no_loss: bool = False  # drop (and count) examples with no loss token instead of stopping
    epochs: float = Field(2.0, gt=0)
    global_batch_size: int = Field(64, gt=0)  # micro_batch_size x gradient accumulation x workers
    micro_batch_size: int = Field(1, gt=0)
    num_workers: int = Field(2, gt=0)
    # CPU cores Ray reserves for each worker; Ray gives the worker as many torch threads (one worker on 2 cores: 2)
    cpus_per_worker: int = Field(1, gt=0)
    use_gpu: bool = False
    lr: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    # auto: bf16 where the hardware has it (a CUDA device with bf16, a CPU with AMX or AVX512-BF16); on: or refuse
    bf16: Literal["auto", "on", "off"] = "auto"

    @field_validator("bf16", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        # YAML reads a bare on / off (as in `train.bf16=off`) as a boolean
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    strategy: Literal["deepspeed", "ddp"] = "deepspeed"  # ddp: each worker holds the whole model (small models)
    shard_optimizer: bool = True  # ddp: AdamW states sharded over the workers (ZeRO-1, ZeroRedundancyOptimizer)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% more compute
    # torch.compile each decoder layer (ddp only): fused element-wise work, ~20-30 s to compile at the first step
    compile: bool = False
    # the attention kernel while training: eager (matmuls + softmax) beat PyTorch's CPU flash kernel by ~20% on the
    # math sets' ~400-token sequences, but keeps every layer's attention weights (micro_batch x heads x length^2)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    loss_chunk_tokens: int = Field(256, gt=0)  # labelled positions whose logits are alive at once (ddp; ZeRO-3: all)
    check_memory: bool = True  # refuse a CPU run whose estimated peak memory exceeds what the machine has free
    offload_params: bool = False  # ZeRO-3 CPU offload, as the paper did for 13B
    offload_optimizer: bool = False
    group_by_length: bool = True
    max_steps: int | None = Field(None, gt=0)  # stop after this many optimizer steps (smoke runs)
    log_every: int = Field(10, gt=0)  # each Ray Train report synchronises all workers: not every step
    checkpoint_every: int = Field(0, ge=0)  # optimizer steps between resumable checkpoints (0: none before the end)
    max_failures: int = Field(2, ge=0)  # worker failures Ray Train recovers from (restarting at the last checkpoint)
    deepspeed_config: str = "cluster/deepspeed_zero3.json"
    seed: int = 42
    # sft: the assistant-token loss (vanilla / NUT / NAT sets); dpo / kto: preference losses on the sets of
    # `build --mode dpo | kto`, against the frozen train.model (nat_ray.training.preference)
    objective: str = "sft"  # a name of nat_ray.training.objectives.OBJECTIVES, or module:attribute of one

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        objective_for(value)
        return value

    beta: float = Field(0.1, gt=0)  # DPO / KTO temperature of the log-ratio
    desirable_weight: float | None = Field(None, gt=0)  # KTO; both unset: each class weighs as much in total
    undesirable_weight: float | None = Field(None, gt=0)
    sft_weight: float = Field(0.0, ge=0)  # DPO / KTO: plus this x the SFT loss on the chosen / desirable completions

    @model_validator(mode="after")
    def _divides(self) -> TrainConfig:
        per_step = self.micro_batch_size * self.num_workers
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size x num_workers "
                f"({self.micro_batch_size} x {self.num_workers})"
            )
        if self.strategy == "ddp" and (self.offload_params or self.offload_optimizer):
            raise ValueError("offload_params / offload_optimizer are DeepSpeed ZeRO-3 options: use strategy deepspeed")
        if self.compile and self.strategy == "deepspeed":
            # ZeRO-3 gathers each layer's weights in hooks inside the layer, which the compiler would have to trace
            raise ValueError(
                "compile: true needs strategy ddp (ZeRO-3 gathers weights inside each layer): set train.compile=false"
            )
        return self

    @property
    def head_chunk_tokens(self) -> int | None:
        """Labelled positions per call of the LM head in the loss; None: all in one call. ZeRO-3 gathers the head's
        weights collectively on every call, so every rank must call it equally often (``nat_ray/training/loss.py``)."""
        return None if self.strategy == "deepspeed" else self.loss_chunk_tokens

    @property
    def accumulation(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.num_workers)
