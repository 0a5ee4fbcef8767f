"""The train stage: a NAT training set -> a fine-tuned Hugging Face checkpoint, with Ray Train + DeepSpeed ZeRO-3.

    nat-ray train --config configs/train_smollm2_strategyqa_nat.yaml
    ray job submit --working-dir . -- nat-ray train --config configs/train_smollm2_strategyqa_nat.yaml \\
        train.use_gpu=true train.num_workers=8

Everything that can be checked is checked before any worker starts (model folder, training set, batch sizes). The
output folder gets the model (16-bit weights gathered from ZeRO-3), its tokenizer, ``nat_ray_train.json`` (the run's
config and final figures) and ``metrics.jsonl`` (one line per logging step).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from nat_ray.config import RunConfig, dump_config
from nat_ray.errors import InputError
from nat_ray.models import resolve_model_path
from nat_ray.storage import atomic_dir, read_examples
from nat_ray.training.loop import HF_DIR, train_loop_per_worker
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


def _progress(path: Path, done: threading.Event) -> None:
    """Follow the metrics log with a progress bar (loss, lr, tokens/s) until training ends."""
    from tqdm import tqdm

    bar, seen = None, 0
    while not done.wait(1.0) or path.exists():
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines[seen:]:
            m = json.loads(line)
            if bar is None:
                bar = tqdm(total=m["total_steps"], unit="step", desc="train", mininterval=2)
            bar.n = m["step"]
            bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{m['lr']:.2e}", tok_s=f"{m['tokens_per_s']:.0f}")
        seen = len(lines)
        if done.is_set():
            break
    if bar is not None:
        bar.close()


def prepare_data(cfg: RunConfig) -> tuple[Path, list[dict], list[dict], dict]:
    """Validate the model and data and tokenise: (model path, train rows, dev rows, stats)."""
    from transformers import AutoConfig, AutoTokenizer

    tc = cfg.train
    assert tc is not None
    model_path = resolve_model_path(tc.model)
    architectures = AutoConfig.from_pretrained(model_path).architectures or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise InputError(f"{model_path}: not a causal LM (architectures: {architectures})")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        raise InputError(f"{model_path}: the tokenizer has no chat template")
    encoded, stats = encode_all(tokenizer, read_examples(tc.data), tc.max_length, tc.drop_no_loss)
    per_worker = len(encoded) // tc.num_workers
    if per_worker < tc.micro_batch_size * tc.accumulation:
        raise InputError(
            f"{len(encoded)} examples over {tc.num_workers} workers is less than one optimizer step per worker "
            f"({tc.micro_batch_size} x {tc.accumulation} accumulation); lower global_batch_size"
        )
    dev: list[dict] = []
    if tc.dev:
        dev_encoded, _ = encode_all(tokenizer, read_examples(tc.dev), tc.max_length, tc.drop_no_loss)
        dev = [{"input_ids": e.input_ids, "labels": e.labels} for e in dev_encoded]
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded]
    return model_path, rows, dev, stats


def run_train(cfg: RunConfig, progress: bool = True) -> dict:
    import ray
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as TrainRunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    tc = cfg.train
    if tc is None:
        raise InputError("training needs the 'train' section")
    model_path, rows, dev, stats = prepare_data(cfg)
    template = _deepspeed_template(tc.deepspeed_config)
    out = cfg.checkpoint_dir()
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, log_to_driver=False, include_dashboard=False, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    datasets = {"train": ray.data.from_items(rows)}
    if dev:
        datasets["dev"] = ray.data.from_items(dev)
    storage = (Path(cfg.out) / "ray_train").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    live = storage / "metrics.live.jsonl"
    live.unlink(missing_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": tc.model_dump(mode="json"),
            "deepspeed": template,
            "model_path": str(model_path),
            "has_dev": bool(dev),
        },
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu),
        run_config=TrainRunConfig(
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[_metrics_callback(live)],
        ),
        datasets=datasets,
        torch_config=TorchConfig(backend="nccl" if tc.use_gpu else "gloo"),
    )
    done = threading.Event()
    follower = threading.Thread(target=_progress, args=(live, done), daemon=True)
    if progress:
        follower.start()
    try:
        result = trainer.fit()
    finally:
        done.set()
        if progress:
            follower.join(timeout=5)
    if result.error is not None:
        raise result.error
    final = dict(result.metrics or {})
    with result.checkpoint.as_directory() as d, atomic_dir(out, overwrite=True) as tmp:
        shutil.copytree(Path(d) / HF_DIR, tmp, dirs_exist_ok=True)
        if live.exists():  # every logging step, including those before a worker failure
            shutil.copyfile(live, tmp / "metrics.jsonl")
        summary = json.loads((tmp / "nat_ray_train.json").read_text())
        summary |= {"config": dump_config(cfg), "data": stats}
        (tmp / "nat_ray_train.json").write_text(json.dumps(summary, indent=2))
    return {"out": str(out), "data": stats, **{k: final.get(k) for k in ("step", "total_steps", "dev_perplexity")}}
