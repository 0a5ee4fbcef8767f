"""The training step, a plain function: Ray Train runs it on every worker (``train_loop_per_worker``).

DeepSpeed ZeRO-3 (gloo on CPU, NCCL on GPU) over the worker's dataset shard, length-grouped micro-batches, AdamW with
a cosine schedule and warm-up, loss on assistant tokens only. Every ``log_every`` optimizer steps it reports loss,
learning rate, tokens/s and padding efficiency; every ``checkpoint_every`` steps a resumable DeepSpeed checkpoint
(each worker its own shards, merged by Ray Train). After a worker failure Ray Train restarts the group, which resumes
from the latest checkpoint and runs to the same final step. At the end the 16-bit weights are gathered into a Hugging
Face model folder (rank 0) and reported as the final checkpoint, with the held-out perplexity when a dev set is given.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from nat_ray.config import TrainConfig
from nat_ray.training.data import batch_order, collate
from nat_ray.training.tokenize import IGNORE

HF_DIR = "hf"  # the model folder inside the final checkpoint


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
    ds["bf16"]["enabled"] = cfg.bf16 == "on" or (cfg.bf16 == "auto" and cuda and bf16_ok)
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    ds["gradient_accumulation_steps"] = cfg.accumulation
    ds["train_batch_size"] = cfg.global_batch_size
    return ds


def _rows(shard: Any) -> list[dict]:
    return [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in shard.iter_rows()]


def _all_reduce(values: list[float], op: str = "sum") -> list[float]:
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.tolist()


def _dev_perplexity(engine: Any, rows: list[dict], pad_id: int, micro: int) -> float | None:
    """exp(mean NLL) over the assistant tokens of held-out positives; every rank runs (ZeRO-3 shards the weights)."""
    import torch

    steps = int(_all_reduce([len(rows) // micro], "min")[0])
    nll, count = 0.0, 0
    engine.eval()
    with torch.no_grad():
        for s in range(steps):
            chunk = rows[s * micro : (s + 1) * micro]
            batch = collate([r["input_ids"] for r in chunk], [r["labels"] for r in chunk], pad_id)
            logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
            )
            nll += losses.item()
            count += int((labels != IGNORE).sum())
    engine.train()
    nll, count = _all_reduce([nll, count])
    return math.exp(nll / count) if count else None


def train_loop_per_worker(config: dict) -> None:
    import deepspeed
    import ray.train
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    cfg = TrainConfig.model_validate(config["train"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.manual_seed(cfg.seed)
    cuda = torch.cuda.is_available() and cfg.use_gpu
    tokenizer = AutoTokenizer.from_pretrained(config["model_path"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(config["model_path"], dtype=torch.float32)
    model.config.use_cache = False
    ds_config = fill_deepspeed_config(
        config["deepspeed"], cfg, model.config.hidden_size, cuda, cuda and torch.cuda.is_bf16_supported()
    )

    rows = _rows(ray.train.get_dataset_shard("train"))
    dev_shard = ray.train.get_dataset_shard("dev") if config.get("has_dev") else None
    dev_rows = _rows(dev_shard) if dev_shard is not None else []
    lengths = [len(r["input_ids"]) for r in rows]
    per_step = cfg.micro_batch_size * cfg.accumulation
    steps_per_epoch = int(_all_reduce([len(rows) // per_step], "min")[0])  # the same on every worker
    total = min(cfg.max_steps or 10**12, math.ceil(steps_per_epoch * cfg.epochs))
    warmup = math.ceil(cfg.warmup_ratio * total)

    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
        lr_scheduler=lambda opt: get_cosine_schedule_with_warmup(opt, warmup, total),
    )
    step, resumed_from = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            if (Path(d) / "latest").exists():
                _, client = engine.load_checkpoint(d)
                step = resumed_from = int(client["step"])

    epoch_batches: dict[int, list[list[int]]] = {}
    real = padded = 0
    loss_sum, micro_in_step = 0.0, 0
    t_log = time.monotonic()
    for m in range(step * cfg.accumulation, total * cfg.accumulation):
        epoch, within = divmod(m, steps_per_epoch * cfg.accumulation)
        if epoch not in epoch_batches:
            epoch_batches = {epoch: batch_order(lengths, cfg.micro_batch_size, cfg.seed + epoch, cfg.group_by_length)}
        idx = epoch_batches[epoch][within]
        batch = collate([rows[i]["input_ids"] for i in idx], [rows[i]["labels"] for i in idx], pad_id)
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        loss_sum += loss.item()
        micro_in_step += 1
        if (m + 1) % cfg.accumulation:
            continue
        step += 1
        checkpoint_now = bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total)
        # Step 1 is always logged (it carries the start-up); every report is a sync point of all workers.
        if step != 1 and step % cfg.log_every and step != total and not checkpoint_now:
            continue
        loss_total, real_g, padded_g, n = _all_reduce([loss_sum, real, padded, micro_in_step])
        elapsed = time.monotonic() - t_log
        metrics = {
            "step": step,
            "total_steps": total,
            "epoch": epoch + (within + 1) / (steps_per_epoch * cfg.accumulation),
            "loss": loss_total / n,
            "lr": scheduler.get_last_lr()[0],
            "tokens": int(real_g),  # non-pad tokens over all workers since the last log
            "seconds": elapsed,
            "tokens_per_s": real_g / elapsed,
            "padding_efficiency": real_g / padded_g,
            "resumed_from_step": resumed_from,
        }
        real = padded = 0
        loss_sum, micro_in_step = 0.0, 0
        if checkpoint_now:
            with tempfile.TemporaryDirectory() as d:
                engine.save_checkpoint(d, tag=f"step{step}", client_state={"step": step})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)
        t_log = time.monotonic()

    ppl = _dev_perplexity(engine, dev_rows, pad_id, cfg.micro_batch_size) if dev_shard is not None else None
    state_dict = engine._zero3_consolidated_16bit_state_dict()  # collective: every rank takes part
    final = {"step": step, "total_steps": total, "resumed_from_step": resumed_from, "dev_perplexity": ppl}
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            out = Path(d) / HF_DIR
            engine.module.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(out)
            (out / "nat_ray_train.json").write_text(json.dumps({"train": config["train"], **final}, indent=2))
            ray.train.report(final | {"final": True}, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(final | {"final": True})
