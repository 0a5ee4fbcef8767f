"""The training loop Ray Train runs on every worker (``train_loop_per_worker``: ``setup_worker``, ``run_steps``,
``save_final``), around ``micro_step``: one micro-batch's collate, forward and backward, a plain function of the
strategy, the loss module and the objective (``nat_ray.training.objectives``: SFT, DPO, KTO, or one added by import
path).

``train.strategy`` picks how workers share the model (``nat_ray.training.strategy``: DeepSpeed ZeRO-3, gloo on CPU and
NCCL on GPU, or plain DDP). Each worker takes its dataset shard in length-grouped micro-batches; AdamW, cosine schedule
with warm-up; the loss is computed on assistant tokens only, with the LM head applied only where labels count
(``nat_ray.training.loss``); activation checkpointing is optional, and so are compiled decoder layers and eager
attention (``nat_ray.training.speed``). Every ``log_every`` optimizer steps the workers
report loss, learning rate, tokens/s, padding efficiency and their peak resident memory (each report is a sync
point); every ``checkpoint_every`` steps a resumable checkpoint. After a worker failure Ray Train restarts the group,
which resumes from the latest checkpoint and runs to the same final step. At the end rank 0 reports the Hugging Face
model folder as the final checkpoint, with the held-out perplexity when a dev set is given.

Live progress (model loaded, each micro-batch's tokens) goes to the driver through ``config["progress"]``, a
``ray.util.queue.Queue``, without synchronising the workers.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nat_ray.config import TrainConfig
from nat_ray.records import TRAIN_RECORD, TrainingRecord
from nat_ray.storage import write_record
from nat_ray.training.data import batch_order, collate
from nat_ray.training.memory import GB, PeakRSS
from nat_ray.training.objectives import Objective, objective_for
from nat_ray.training.tokenize import IGNORE

HF_DIR = "hf"  # the model folder inside the final checkpoint


def _rows(shard: Any) -> list[dict]:
    # Ray Data hands columns back as numpy arrays: one C-level conversion each (a preference row's two sequences
    # may stay arrays inside the list; collate takes either)
    return [{k: v.tolist() if hasattr(v, "tolist") else v for k, v in r.items()} for r in shard.iter_rows()]


def _all_reduce(values: list[float], op: str = "sum") -> list[float]:
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        ops = {"min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX, "sum": dist.ReduceOp.SUM}
        dist.all_reduce(t, op=ops[op])
    return t.tolist()


class _Progress:
    """Events for the driver's progress line; progress must never stop training, so failures are dropped."""

    def __init__(self, queue: Any, rank: int) -> None:
        self.queue, self.rank = queue, rank

    def __call__(self, event: str, **fields: Any) -> None:
        if self.queue is None:
            return
        with contextlib.suppress(Exception):
            self.queue.put_nowait({"event": event, "rank": self.rank, "t": time.time(), **fields})


def _dev_perplexity(strategy: Any, rows: list[dict], pad_id: int, micro: int) -> float | None:
    """exp(mean NLL) over the assistant tokens of held-out positives; every rank runs (ZeRO-3 shards the weights)."""
    steps = int(_all_reduce([len(rows) // micro], "min")[0])
    nll, count = 0.0, 0
    with strategy.eval():
        for s in range(steps):
            chunk = rows[s * micro : (s + 1) * micro]
            batch = collate([r["input_ids"] for r in chunk], [r["labels"] for r in chunk], pad_id)
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            nll += strategy.forward(batch).item() * n  # the loss is the mean over the labelled tokens
            count += n
    nll, count = _all_reduce([nll, count])
    return math.exp(nll / count) if count else None


@dataclass(frozen=True)
class MicroStep:
    loss: float
    tokens: int  # non-pad tokens of the micro-batch
    padded: int  # all its positions
    stats: dict[str, tuple[float, int]]  # the objective's statistics: key -> (sum, count)


def micro_step(
    strategy: Any, module: Any, objective: Objective, rows: list[dict], pad_id: int, boundary: bool
) -> MicroStep:
    """One micro-batch: collate, forward, backward (the optimizer step at an accumulation ``boundary``); a plain
    function of its arguments (no Ray), so any strategy with ``forward`` / ``backward`` can drive it."""
    batch = objective.collate(rows, pad_id)
    loss = strategy.forward(batch)
    strategy.backward(loss, boundary)
    # (``module`` is the object the strategy wraps: its stats are this micro-batch's)
    stats = {k: module.stats[k] for k in objective.stat_keys}
    mask = batch["attention_mask"]
    return MicroStep(loss.item(), int(mask.sum()), mask.numel(), stats)


@dataclass
class Worker:
    """What a worker holds once set up (``setup_worker``): the model wrapped by its strategy, its data shard, the
    schedule's length and where a resumed run starts."""

    config: dict
    cfg: TrainConfig
    rank: int
    progress: _Progress
    precision: Any  # nat_ray.hardware.Precision
    tokenizer: Any
    pad_id: int
    objective: Objective
    module: Any  # the objective's loss module, wrapping the Hugging Face model as .lm
    strategy: Any
    rows: list[dict]
    dev_rows: list[dict] | None  # None: no dev set given
    steps_per_epoch: int
    total: int  # optimizer steps of the whole run
    step: int  # the next step starts after this one (a resumed run: its checkpoint's step)
    resumed_from: int
    memory: PeakRSS
    started: float
    setup_peak: int  # bytes, model load + strategy set-up, before the first micro-batch


def setup_worker(config: dict) -> Worker:
    """Load the model and tokenizer, wrap them in the objective's loss module and the strategy, take this worker's
    shard, and restore the latest checkpoint when Ray Train restarted the group."""
    import ray.train
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    from nat_ray.hardware import resolve_bf16
    from nat_ray.training.speed import compile_layers
    from nat_ray.training.strategy import STRATEGIES

    memory = PeakRSS()
    started = time.monotonic()
    cfg = TrainConfig.model_validate(config["train"])
    rank = ray.train.get_context().get_world_rank()
    progress = _Progress(config.get("progress"), rank)
    torch.manual_seed(cfg.seed)
    cuda = torch.cuda.is_available() and cfg.use_gpu
    precision = resolve_bf16(cfg.bf16, "train.bf16", cuda)
    tokenizer = AutoTokenizer.from_pretrained(config["model_path"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lm = AutoModelForCausalLM.from_pretrained(
        config["model_path"], dtype=torch.float32, attn_implementation=cfg.attn_implementation
    )
    lm.config.use_cache = False
    if cfg.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.compile:
        compile_layers(lm)
    objective = objective_for(cfg.objective)
    module = objective.module(lm, cfg, config.get("objective_settings"))
    module.train()  # from_pretrained returns eval mode, in which transformers skips gradient checkpointing

    rows = _rows(ray.train.get_dataset_shard("train"))
    dev_rows = _rows(ray.train.get_dataset_shard("dev")) if config.get("has_dev") else None
    per_step = cfg.micro_batch_size * cfg.accumulation
    steps_per_epoch = int(_all_reduce([len(rows) // per_step], "min")[0])  # the same on every worker
    total = min(cfg.max_steps or 10**12, math.ceil(steps_per_epoch * cfg.epochs))
    warmup = math.ceil(cfg.warmup_ratio * total)

    def schedule(opt: Any) -> Any:
        return get_cosine_schedule_with_warmup(opt, warmup, total)

    strategy = STRATEGIES[cfg.strategy](module, cfg, schedule, cuda, precision.bf16, config["deepspeed"])
    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            step = strategy.load(d) or 0
    worker = Worker(
        config, cfg, rank, progress, precision, tokenizer, pad_id, objective, module, strategy, rows, dev_rows,
        steps_per_epoch, total, step, step, memory, started, memory.peak,
    )  # fmt: skip
    progress(
        "ready", seconds=time.monotonic() - started, total_steps=total, step=step, strategy=cfg.strategy,
        precision=f"{precision.name} ({precision.reason})",
    )  # fmt: skip
    return worker


def run_steps(w: Worker) -> float:
    """The optimizer steps from ``w.step`` to ``w.total``, each ``accumulation`` micro-batches of ``micro_step``;
    every ``log_every`` steps the workers' reduced metrics (and every ``checkpoint_every`` a checkpoint) go to Ray
    Train. Returns the mean loss of the last logged interval."""
    import ray.train

    cfg, objective = w.cfg, w.objective
    lengths = [objective.row_length(r) for r in w.rows]
    epoch_batches: dict[int, list[list[int]]] = {}
    real = padded = 0
    loss_sum, micro_in_step, last_loss = 0.0, 0, float("nan")
    stat_keys = objective.stat_keys
    stat_sums = dict.fromkeys(stat_keys, (0.0, 0))
    t_log = time.monotonic()
    per_epoch = w.steps_per_epoch * cfg.accumulation
    for m in range(w.step * cfg.accumulation, w.total * cfg.accumulation):
        epoch, within = divmod(m, per_epoch)
        if epoch not in epoch_batches:
            epoch_batches = {epoch: batch_order(lengths, cfg.micro_batch_size, cfg.seed + epoch, cfg.group_by_length)}
        boundary = (m + 1) % cfg.accumulation == 0
        chunk = [w.rows[i] for i in epoch_batches[epoch][within]]
        done = micro_step(w.strategy, w.module, objective, chunk, w.pad_id, boundary)
        real += done.tokens
        padded += done.padded
        loss_sum += done.loss
        for k, (total_k, n_k) in done.stats.items():
            stat_sums[k] = (stat_sums[k][0] + total_k, stat_sums[k][1] + n_k)
        micro_in_step += 1
        w.progress("micro", step=w.step + (1 if boundary else 0), micro=m % cfg.accumulation + 1, tokens=done.tokens)
        if not boundary:
            continue
        w.step += 1
        step = w.step
        checkpoint_now = bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < w.total)
        # Step 1 is always logged (it carries the start-up); every report is a sync point of all workers.
        if step != 1 and step % cfg.log_every and step != w.total and not checkpoint_now:
            continue
        loss_total, real_g, padded_g, n = _all_reduce([loss_sum, real, padded, micro_in_step])
        (peak,) = _all_reduce([w.memory.peak], "max")
        elapsed = time.monotonic() - t_log
        last_loss = loss_total / n
        metrics = {
            "step": step,
            "total_steps": w.total,
            "epoch": epoch + (within + 1) / per_epoch,
            "loss": last_loss,
            "lr": w.strategy.lr(),
            "tokens": int(real_g),  # non-pad tokens over all workers since the last log
            "seconds": elapsed,
            "tokens_per_s": real_g / elapsed,
            "padding_efficiency": real_g / padded_g,
            "peak_rss_gb": peak / GB,  # the largest worker's resident set so far
            "resumed_from_step": w.resumed_from,
        }
        reduced = _all_reduce([x for k in stat_keys for x in stat_sums[k]]) if stat_keys else []
        for i, k in enumerate(stat_keys):  # the mean since the last log, over every worker's micro-batches
            if reduced[2 * i + 1]:
                metrics[k] = reduced[2 * i] / reduced[2 * i + 1]
        stat_sums = dict.fromkeys(stat_keys, (0.0, 0))
        real = padded = 0
        loss_sum, micro_in_step = 0.0, 0
        if checkpoint_now:
            with tempfile.TemporaryDirectory() as d:
                w.strategy.save(d, step)
                saved = any(Path(d).iterdir())  # DDP: rank 0 alone writes the (replicated) state
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d) if saved else None)
        else:
            ray.train.report(metrics)
        t_log = time.monotonic()
    return last_loss


def save_final(w: Worker, last_loss: float) -> None:
    """The held-out perplexity, then rank 0 reports the Hugging Face model folder (with its training record) as the
    final checkpoint; every rank takes part in gathering the weights."""
    import ray.train

    ppl = _dev_perplexity(w.strategy, w.dev_rows, w.pad_id, w.cfg.micro_batch_size) if w.dev_rows is not None else None
    state_dict = w.strategy.hf_state_dict()  # collective under ZeRO-3: every rank takes part
    peak, setup_peak = _all_reduce([w.memory.stop(), w.setup_peak], "max")
    final = {
        "step": w.step,
        "total_steps": w.total,
        "resumed_from_step": w.resumed_from,
        "final_loss": last_loss,  # mean loss of the last logged interval
        "worker_seconds": time.monotonic() - w.started,
        "peak_rss_gb": peak / GB,
        "setup_peak_rss_gb": setup_peak / GB,
        "dev_perplexity": ppl,
        "precision": w.precision.name,
    }
    w.progress("saving")
    with tempfile.TemporaryDirectory() as d:
        if w.rank == 0:
            out = Path(d) / HF_DIR
            prefix = "lm."  # AssistantLoss wraps the Hugging Face model as .lm
            weights = {k.removeprefix(prefix): v for k, v in state_dict.items()}
            w.strategy.module.lm.save_pretrained(out, state_dict=weights, safe_serialization=True)
            w.tokenizer.save_pretrained(out)
            write_record(out / TRAIN_RECORD, TrainingRecord.new(train=w.config["train"], **final))
            ray.train.report(final | {"final": True}, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(final | {"final": True})


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's per-worker function: set up, step, save."""
    worker = setup_worker(config)
    save_final(worker, run_steps(worker))
