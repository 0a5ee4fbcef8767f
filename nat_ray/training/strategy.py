"""How the workers of a training run share the model: DeepSpeed ZeRO-3, or plain PyTorch DDP.

- ``deepspeed`` (the default, and the paper's set-up): parameters, gradients and AdamW states sharded over the workers
  (ZeRO-3), optional CPU offload. It pays when the model does not fit one device, i.e. every real run on GPUs.
- ``ddp``: every worker holds the whole model; gradients are all-reduced once per optimizer step, and the AdamW states
  are sharded over the workers by PyTorch's ``ZeroRedundancyOptimizer`` (ZeRO-1; ``train.shard_optimizer``). For a
  model that fits each worker (SmolLM2-135M on a CPU) it skips ZeRO-3's per-layer gathers and is faster.

Both are built the same way (``STRATEGIES[name](module, cfg, schedule, cuda, bf16, ds_template)``; DDP ignores the
DeepSpeed config template) and expose the same small interface to the loop (``nat_ray.training.loop``): ``forward``,
``backward`` (one micro-batch; the optimizer step at an accumulation boundary), ``lr``, ``eval``, ``save`` / ``load``
of a resumable checkpoint, and
``hf_state_dict`` (the whole model's weights, a collective call) for the final Hugging Face folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nat_ray.config import TrainConfig
from nat_ray.training.speed import adamw_kwargs

ADAM_BETAS, ADAM_EPS, GRAD_CLIP = (0.9, 0.999), 1e-8, 1.0  # as cluster/deepspeed_zero3.json


def fill_deepspeed_config(template: dict, cfg: TrainConfig, hidden_size: int, cuda: bool, bf16_ok: bool) -> dict:
    """Resolve the ``"auto"`` values of the DeepSpeed config file from the training config and the model."""
    ds = json.loads(json.dumps(template))
    zero = ds["zero_optimization"]
    for key, value in {
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }.items():
        if zero.get(key) == "auto":
            zero[key] = value
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cuda}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cuda}
    params = ds["optimizer"]["params"]
    params["lr"], params["weight_decay"] = cfg.lr, cfg.weight_decay
    if not cuda and not cfg.offload_optimizer:
        params["torch_adam"] = True  # DeepSpeed's fused Adam is CUDA-only
    # GPUs: DeepSpeed keeps bf16 weights and fp32 master copies; CPUs: the step autocasts instead (DeepSpeedStrategy)
    ds["bf16"]["enabled"] = cuda and bf16_ok
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    ds["gradient_accumulation_steps"] = cfg.accumulation
    ds["train_batch_size"] = cfg.global_batch_size
    return ds


class DeepSpeedStrategy:
    def __init__(
        self, module: torch.nn.Module, cfg: TrainConfig, schedule: Callable, cuda: bool, bf16: bool, ds_template: dict
    ) -> None:
        import deepspeed

        hidden = module.lm.config.hidden_size
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=module,
            model_parameters=[p for p in module.parameters() if p.requires_grad],
            config=fill_deepspeed_config(ds_template, cfg, hidden, cuda, bf16),
            lr_scheduler=schedule,
        )
        self.module = self.engine.module
        self.autocast = _bf16_autocast("cpu", bf16 and not cuda)  # on GPUs DeepSpeed's own bf16 mode does it

    def forward(self, batch: dict) -> torch.Tensor:
        with self.autocast:
            return self.engine(**batch)

    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by the accumulation steps itself
        self.engine.step()  # a no-op except at the accumulation boundary

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def eval(self) -> contextlib.AbstractContextManager:
        return _eval_mode(self.engine)

    def save(self, folder: str, step: int) -> None:
        self.engine.save_checkpoint(folder, tag=f"step{step}", client_state={"step": step})

    def load(self, folder: str) -> int | None:
        if not (Path(folder) / "latest").exists():
            return None
        _, client = self.engine.load_checkpoint(folder)
        return int(client["step"])

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        return self.engine._zero3_consolidated_16bit_state_dict()  # collective: every rank takes part


class DDPStrategy:
    def __init__(
        self, module: torch.nn.Module, cfg: TrainConfig, schedule: Callable, cuda: bool, bf16: bool, ds_template: dict
    ) -> None:
        import ray.train.torch
        import torch.distributed as dist

        self.module = module
        # Gradients live in DDP's all-reduce buckets instead of beside them: one copy of the gradients, not two.
        self.wrapped = ray.train.torch.prepare_model(
            module, parallel_strategy="ddp", parallel_strategy_kwargs={"gradient_as_bucket_view": True}
        )
        params = [p for p in module.parameters() if p.requires_grad]
        adam = {"lr": cfg.lr, "betas": ADAM_BETAS, "eps": ADAM_EPS, "weight_decay": cfg.weight_decay}
        adam |= adamw_kwargs(cuda)
        self.sharded = cfg.shard_optimizer and dist.is_initialized() and dist.get_world_size() > 1
        if self.sharded:
            from torch.distributed.optim import ZeroRedundancyOptimizer

            # Each worker keeps the AdamW moments of its share of the parameters and broadcasts what it updated.
            self.optimizer = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.AdamW, **adam)
        else:
            self.optimizer = torch.optim.AdamW(params, **adam)
        self.scheduler = schedule(self.optimizer)
        self.accumulation = cfg.accumulation
        self.autocast = _bf16_autocast("cuda" if cuda else "cpu", bf16)
        self.device = next(module.parameters()).device

    def forward(self, batch: dict) -> torch.Tensor:
        with self.autocast:
            return self.wrapped(**{k: v.to(self.device) for k, v in batch.items()})

    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        # Gradients are all-reduced only on the micro-batch that ends an optimizer step.
        sync = contextlib.nullcontext() if boundary or not hasattr(self.wrapped, "no_sync") else self.wrapped.no_sync()
        with sync:
            (loss / self.accumulation).backward()
        if boundary:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), GRAD_CLIP)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def eval(self) -> contextlib.AbstractContextManager:
        return _eval_mode(self.wrapped)

    def save(self, folder: str, step: int) -> None:
        import ray.train

        if self.sharded:
            self.optimizer.consolidate_state_dict(to=0)  # collective: rank 0 gathers every shard's moments
        if ray.train.get_context().get_world_rank() == 0:  # replicas are identical: one copy is the checkpoint
            state = {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": step,
            }
            torch.save(state, Path(folder) / "ddp_state.pt")

    def load(self, folder: str) -> int | None:
        path = Path(folder) / "ddp_state.pt"
        if not path.exists():
            return None
        # weights_only: tensors and plain containers only, so a file planted in a run folder cannot run code here
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return int(state["step"])

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()


def _bf16_autocast(device_type: str, on: bool) -> contextlib.AbstractContextManager:
    """The forward pass's matmuls in bf16 under autocast, weights, gradients and AdamW states in fp32 (the loss's
    log-softmax and reductions stay fp32: AssistantLoss computes them in fp32)."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


@contextlib.contextmanager
def _eval_mode(module: Any):
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train()


STRATEGIES = {"deepspeed": DeepSpeedStrategy, "ddp": DDPStrategy}
