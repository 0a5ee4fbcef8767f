"""The train stage: a NAT training set -> a fine-tuned Hugging Face checkpoint, with Ray Train + DeepSpeed ZeRO-3.

    nat-ray train --config configs/train_smollm2_strategyqa_nat.yaml
    ray job submit --working-dir . -- nat-ray train --config configs/train_smollm2_strategyqa_nat.yaml \\
        train.use_gpu=true train.num_workers=8

Everything that can be checked is checked before any worker starts (model folder, training set, batch sizes, and an
estimate of each worker's peak memory against what this machine has). The output folder gets the one copy of the
model (16-bit weights gathered from ZeRO-3, or DDP's replica), its tokenizer, ``nat_ray_train.json`` (the run's config,
data counts and final figures: loss, tokens seen, wall time, peak memory per worker) and ``metrics.jsonl`` (one line
per logging step). ``<out>/ray_train/`` holds Ray Train's resumable checkpoints (every ``train.checkpoint_every``
steps) while the run goes on and is removed when it completes; a run stopped before then (its driver killed, a session
ended, a failure past ``max_failures``) resumes from its latest checkpoint when rerun with the same model, data and
settings (``run_key``), to the same final step. A worker killed for memory ends the run with one line naming the
knobs that lower it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from nat_ray.config import RunConfig, TrainConfig, dump_config
from nat_ray.config_train import RESILIENCE_FIELDS, SPEED_FIELDS
from nat_ray.errors import InputError
from nat_ray.hardware import resolve_bf16
from nat_ray.models import resolve_model_path
from nat_ray.ray_init import init_ray, quiet_ray_data
from nat_ray.records import TRAIN_LOG, TRAIN_RECORD, TrainingRecord
from nat_ray.reformat import training_set
from nat_ray.storage import atomic_dir, read_examples, read_record, write_record
from nat_ray.training.loop import HF_DIR, train_loop_per_worker
from nat_ray.training.memory import GB, ModelShape, TrainingMemoryError, check_fits, estimate_peak_bytes, knobs
from nat_ray.training.objectives import objective_for
from nat_ray.training.progress import TrainProgress, say
from nat_ray.training.speed import check_compiler
from nat_ray.training.tokenize import encode_all

_REPO = Path(__file__).resolve().parents[2]


def _deepspeed_template(path: str) -> dict:
    for candidate in (Path(path), _REPO / path):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{candidate}:{exc.lineno}: malformed DeepSpeed config: {exc.msg}") from None
    raise InputError(f"DeepSpeed config {path} not found")


def _metrics_callback(path: Path):
    from ray.train import UserCallback

    class MetricsLog(UserCallback):
        """Runs in the Ray Train controller: one JSON line per logging step (workers' figures are all-reduced)."""

        def after_report(self, run_context, metrics, checkpoint) -> None:  # type: ignore[no-untyped-def]
            if metrics and "loss" in metrics[0]:
                with open(path, "a") as f:
                    f.write(json.dumps(metrics[0]) + "\n")

    return MetricsLog()


def prepare_data(cfg: RunConfig) -> tuple[Path, list[dict], list[dict], dict]:
    """Validate the model and data and tokenise: (model path, train rows, dev rows, stats incl. the longest row)."""
    from transformers import AutoConfig, AutoTokenizer

    tc = cfg.train_section
    model_path = resolve_model_path(tc.model)
    architectures = AutoConfig.from_pretrained(model_path).architectures or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise InputError(f"{model_path}: not a causal LM (architectures: {architectures})")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        raise InputError(f"{model_path}: the tokenizer has no chat template")
    objective = objective_for(tc.objective)
    rows, stats = objective.encode(tokenizer, tc)
    per_worker = len(rows) // tc.num_workers
    if per_worker < tc.micro_batch_size * tc.accumulation:
        raise InputError(
            f"{len(rows)} examples over {tc.num_workers} workers is less than one optimizer step per worker "
            f"({tc.micro_batch_size} x {tc.accumulation} accumulation); lower global_batch_size"
        )
    dev: list[dict] = []
    if tc.dev:
        dev_encoded, _ = encode_all(tokenizer, read_examples(tc.dev), tc.max_length, tc.drop_no_loss)
        dev = [{"input_ids": e.input_ids, "labels": e.labels} for e in dev_encoded]
    longest = [objective.row_length(r) for r in rows]
    stats["longest"] = max([*longest, *(len(r["input_ids"]) for r in dev)], default=0)
    return model_path, rows, dev, stats


def _reference(rows: list[dict], model_path: Path, tc: TrainConfig, stats: dict, bf16: bool, report) -> tuple:  # type: ignore[no-untyped-def]
    """The rows with the reference's log-probabilities, and the loss settings the workers need."""
    from nat_ray.training.reference import attach_reference

    precision = "bfloat16" if bf16 or (tc.use_gpu and tc.bf16 != "off") else "float32"
    rows, done = attach_reference(rows, model_path, tc.data or "", precision, tc.micro_batch_size)
    what = f"computed ({done['forwards']} forward passes)" if done["computed"] else "read"
    report(f"reference log-probabilities of {len(rows):,} rows {what}: {done['path']}")
    stats["reference"] = {"precision": precision, "computed": done["computed"], "path": done["path"]}
    return rows, objective_for(tc.objective).settings(tc, stats)


def estimate_memory(cfg: RunConfig, model_path: Path, longest: int, autocast_bf16: bool = False) -> int:
    """Estimated peak resident memory of one worker, in bytes (CPU runs; see ``nat_ray.training.memory``)."""
    from transformers import AutoConfig

    tc = cfg.train_section
    return estimate_peak_bytes(
        ModelShape.from_config(AutoConfig.from_pretrained(model_path)),
        tc.strategy,
        tc.num_workers,
        tc.micro_batch_size * objective_for(tc.objective).sequences_per_row,  # a preference row is two sequences
        min(longest, tc.max_length),
        tc.gradient_checkpointing,
        tc.head_chunk_tokens,
        tc.shard_optimizer,
        autocast_bf16=autocast_bf16,
        eager_attention=tc.attn_implementation == "eager",
    )


def check_worker_cpus(cfg: RunConfig) -> None:
    """The workers' cores must fit the cluster, or Ray Train waits for them forever; a cluster's autoscaler may still
    add nodes, so there it is a warning."""
    import ray

    tc = cfg.train_section
    need, have = tc.num_workers * tc.cpus_per_worker, ray.cluster_resources().get("CPU", 0)
    if need <= have + 1e-9:
        return
    message = (
        f"training needs {need} CPUs (train.num_workers {tc.num_workers} x train.cpus_per_worker "
        f"{tc.cpus_per_worker}) but the cluster has {have:g}"
    )
    if cfg.ray_address or os.environ.get("RAY_ADDRESS"):
        logging.getLogger(__name__).warning(message)
        return
    raise InputError(message + ": lower train.num_workers or train.cpus_per_worker")


def preflight_memory(cfg: RunConfig, estimate: int, longest: int) -> None:
    """Refuse a CPU run on an embedded local cluster whose workers cannot all fit in this machine's free memory."""
    import psutil

    tc = cfg.train_section
    if not tc.check_memory or tc.use_gpu or cfg.ray_address or os.environ.get("RAY_ADDRESS"):
        return  # GPU memory, or other machines' memory: not this machine's to judge
    what = f"this run ({tc.strategy}, micro_batch_size {tc.micro_batch_size}, sequences up to {longest} tokens"
    what += ", gradient checkpointing)" if tc.gradient_checkpointing else ")"
    advice = knobs(tc.micro_batch_size, tc.max_length, tc.gradient_checkpointing, tc.num_workers)
    check_fits(estimate, tc.num_workers, psutil.virtual_memory().available, what, advice)
    # (train.check_memory=false skips this check)


# What Ray's memory monitor says when it kills a worker. Not "OOM killer": Ray's message for any worker that died
# unexpectedly lists the OOM killer among the possible causes, and a crash is not a memory problem.
_RAY_OOM = re.compile(r"OutOfMemoryError|running low on memory|RAY_memory_usage_threshold")


def _memory_failure(exc: BaseException, cfg: RunConfig, peak_gb: float | None) -> TrainingMemoryError | None:
    """A Ray Train failure caused by a worker killed for memory, as one line that names our knobs."""
    text, seen = "", exc
    while seen is not None:
        text += f" {type(seen).__name__}: {seen}"
        seen = seen.__cause__ or seen.__context__
    if not _RAY_OOM.search(text):
        return None
    tc = cfg.train_section
    node = re.search(r"(\d+(?:\.\d+)?GB) */ *(\d+(?:\.\d+)?GB)", text)
    used = f" (node memory {node.group(1)} of {node.group(2)})" if node else ""
    peak = f"; the largest worker had reached {peak_gb:.1f} GB" if peak_gb else ""
    advice = knobs(tc.micro_batch_size, tc.max_length, tc.gradient_checkpointing, tc.num_workers)
    return TrainingMemoryError(f"a training worker was killed for running out of memory{used}{peak}: {advice}")


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _summary(rows: list[dict], final: dict, wall: float, started_at: float) -> dict:
    """Final figures: the last step's loss, tokens seen (each step counted once, also across a resume), times."""
    by_step: dict[int, dict] = {}
    for r in rows:
        by_step[r["step"]] = r  # a step redone after a failure counts once, as its last run
    return {
        "final_loss": final.get("final_loss", rows[-1]["loss"] if rows else None),
        "tokens_seen": sum(r["tokens"] for r in by_step.values()),
        "wall_seconds": round(wall, 1),
        "train_seconds": round(sum(r["seconds"] for r in by_step.values()), 1),
        "peak_rss_gb_per_worker": final.get("peak_rss_gb"),
        "setup_peak_rss_gb_per_worker": final.get("setup_peak_rss_gb"),  # model loaded, before the first step
        "precision": final.get("precision"),  # bfloat16 (autocast) or float32: train.bf16 resolved on the workers
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
    }


def _move_final(result, out: Path, live: Path, summary: dict) -> None:  # type: ignore[no-untyped-def]
    """Move (not copy) the final model folder out of Ray Train's storage into ``out``, atomically."""
    with atomic_dir(out, overwrite=True) as tmp:
        src = Path(result.checkpoint.path) / HF_DIR
        if src.is_dir():  # local storage: a rename, no second copy of the weights
            for item in src.iterdir():
                os.replace(item, tmp / item.name)
        else:
            with result.checkpoint.as_directory() as d:
                shutil.copytree(Path(d) / HF_DIR, tmp, dirs_exist_ok=True)
        if live.exists():  # every logging step, including those before a worker failure
            shutil.copyfile(live, tmp / TRAIN_LOG)
        saved = read_record(tmp / TRAIN_RECORD, TrainingRecord, missing_ok=False)
        fields = saved.model_dump(exclude={"schema_version", "config_hash"}) | summary  # type: ignore[union-attr]
        write_record(tmp / TRAIN_RECORD, TrainingRecord.new(**fields))


# how a run is watched, how fast it goes and how it survives a stop, not what it computes: a resumed run may differ
_NOT_IN_KEY = {"log_every", "out"} | SPEED_FIELDS | RESILIENCE_FIELDS


def run_key(tc: TrainConfig, model_path: Path, out: Path, rows: list[dict], dev: list[dict]) -> str:
    """What a checkpoint was computed from (model, tokenised examples, settings, destination): a rerun resumes a
    checkpoint only when this is the same."""
    what = {
        "train": tc.model_dump(mode="json", exclude=_NOT_IN_KEY),
        "model": str(model_path),
        "out": str(out.resolve()),
        "rows": rows,
        "dev": dev,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def resumable_run(storage: Path, key: str, report) -> str:  # type: ignore[no-untyped-def]
    """The Ray Train run name for ``key`` under ``storage``: a training stopped before the end (its driver killed, or
    failed past ``max_failures``) resumes from its latest checkpoint when rerun with the same inputs; what other
    runs left there (other inputs, or an older version's random names) is removed first, so the disk holds one run's
    checkpoints."""
    name = f"train-{key}"
    storage.mkdir(parents=True, exist_ok=True)
    stale = [p for p in storage.iterdir() if p.name not in (name, metrics_log(storage, name).name)]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    if stale:
        report(f"removed {len(stale)} leftover(s) of other training runs from {storage}")
    if (storage / name).is_dir() and any((storage / name).glob("checkpoint_*")):
        report(f"resuming the interrupted run in {storage / name} from its latest checkpoint")
    else:  # stopped before its first checkpoint: it starts at step 1 again, and so does its log
        metrics_log(storage, name).unlink(missing_ok=True)
    return name


def metrics_log(storage: Path, name: str) -> Path:
    """The run's metrics log (one JSON line per logging step, written by the controller; kept across a resume)."""
    return storage / f"{name}.metrics.jsonl"


TRAIN_POLL_S = 0.25  # seconds between Ray Train controller polls (see run_train)


def run_train(cfg: RunConfig, progress: bool = True) -> dict:
    import ray
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as TrainRunConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    tc = cfg.train
    if tc is None:
        raise InputError("training needs the 'train' section")
    if tc.data is None:
        raise InputError("train.data: no training set given (a .jsonl or Parquet folder from `nat-ray build`)")
    # the workers run on this CPU: refuse a bf16 it lacks now, and count autocast's weight copy in the estimate
    local_cpu = not tc.use_gpu and not (cfg.ray_address or os.environ.get("RAY_ADDRESS"))
    bf16_here = local_cpu and resolve_bf16(tc.bf16, "train.bf16", cuda=False).bf16
    if tc.compile and not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
        check_compiler()  # the workers run here (on a cluster its nodes' images are the cluster's to provide)
    started_at, t0 = time.time(), time.monotonic()
    report = say if progress else (lambda _msg: None)
    report(f"tokenising {tc.data}")
    model_path, rows, dev, stats = prepare_data(cfg)
    estimate = estimate_memory(cfg, model_path, stats["longest"], autocast_bf16=bf16_here)
    report(
        f"{len(rows):,} examples, {stats['tokens']:,} tokens, longest {stats['longest']:,}; estimated peak memory "
        f"{estimate / GB:.1f} GB per worker x {tc.num_workers} ({tc.strategy})"
    )
    if not tc.use_gpu:
        preflight_memory(cfg, estimate, min(stats["longest"], tc.max_length))
    key = run_key(tc, model_path, cfg.checkpoint_dir(), rows, dev)  # (before the reference's log-probabilities)
    settings = None
    if objective_for(tc.objective).reference:
        rows, settings = _reference(rows, model_path, tc, stats, bf16_here, report)
    template = _deepspeed_template(tc.deepspeed_config)
    out = cfg.checkpoint_dir()
    if not ray.is_initialized():
        report("starting Ray")
        init_ray(cfg.ray_address)
    check_worker_cpus(cfg)
    quiet_ray_data()
    datasets = {"train": ray.data.from_items(rows)}
    if dev:
        datasets["dev"] = ray.data.from_items(dev)
    storage = (Path(cfg.out) / "ray_train").resolve()
    name = resumable_run(storage, key, report)
    live = metrics_log(storage, name)
    events = Queue(actor_options={"num_cpus": 0}) if progress else None
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": tc.model_dump(mode="json"),
            "deepspeed": template,
            "model_path": str(model_path),
            "has_dev": bool(dev),
            "progress": events,
            "objective_settings": settings,
        },
        scaling_config=ScalingConfig(
            num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker={"CPU": tc.cpus_per_worker}
        ),
        run_config=TrainRunConfig(
            name=name,  # Ray Train restores a run of the same name and storage from its latest checkpoint
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[_metrics_callback(live)],
        ),
        datasets=datasets,
        torch_config=TorchConfig(backend="nccl" if tc.use_gpu else "gloo"),
    )
    # Ray Train's controller takes one report off a worker's queue (size 1) per poll, every 2 s by default: each
    # `ray.train.report` after the first waits for it, and the run's end is seen up to three polls late (~6 s of a CI
    # training stage). A poll is one small remote call per worker; a user's own setting wins.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(TRAIN_POLL_S))
    report(f"starting {tc.num_workers} workers and loading the model (a minute or two on a small CPU)")
    follower = TrainProgress(events, live, tc.num_workers, tc.accumulation).start() if events is not None else None
    try:
        result = trainer.fit()
        if result.error is not None:
            raise result.error
    except Exception as exc:
        peaks = [r.get("peak_rss_gb") for r in _read_metrics(live) if r.get("peak_rss_gb")]
        failure = _memory_failure(exc, cfg, max(peaks) if peaks else None)
        if failure is not None:
            raise failure from None
        raise
    finally:
        if follower is not None:
            follower.stop()
        if events is not None:
            events.shutdown()
    final = dict(result.metrics or {})
    summary = _summary(_read_metrics(live), final, time.monotonic() - t0, started_at)
    _move_final(
        result, out, live, summary | {"config": dump_config(cfg), "data": stats, "training_set": training_set(tc.data)}
    )
    shutil.rmtree(storage, ignore_errors=True)  # resumable checkpoints are only needed while the run goes on
    keys = ("step", "total_steps", "dev_perplexity")
    return {"out": str(out), "data": stats, **{k: final.get(k) for k in keys}, **summary}
