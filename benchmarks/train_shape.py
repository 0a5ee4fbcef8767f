"""Part (4) of ``benchmarks/train.py`` (``--part shape``): the shipped SmolLM2 train config in bf16 as shipped against
other shapes of the run — workers x cores, micro-batch, activation checkpointing — on the same 512-token sequences.

    python benchmarks/train.py --part shape [--quick] [--json PATH]
"""

from __future__ import annotations

from pathlib import Path

SHAPES = {  # name: the shape, on top of the shipped config (bf16 auto); "shipped" is the config as it is
    "shipped": (),
    "ddp2_micro1_ckpt": ("train.num_workers=2", "train.cpus_per_worker=1", "train.micro_batch_size=1",
                         "train.gradient_checkpointing=true"),
    "ddp2_micro2_ckpt": ("train.num_workers=2", "train.cpus_per_worker=1", "train.micro_batch_size=2",
                         "train.gradient_checkpointing=true"),
    "one_worker_2cpu_micro1_ckpt": ("train.num_workers=1", "train.cpus_per_worker=2", "train.micro_batch_size=1",
                                    "train.gradient_checkpointing=true"),
    "one_worker_2cpu_micro4_ckpt": ("train.num_workers=1", "train.cpus_per_worker=2", "train.micro_batch_size=4",
                                    "train.gradient_checkpointing=true"),
    "one_worker_2cpu_micro4_no_ckpt": ("train.num_workers=1", "train.cpus_per_worker=2", "train.micro_batch_size=4",
                                       "train.gradient_checkpointing=false"),
}  # fmt: skip


def shape_runs(workdir: Path, model: Path, full: Path, shipped, quick: bool) -> dict:  # type: ignore[no-untyped-def]
    """(4) The shipped config in bf16 as shipped (its workers, micro-batch, checkpointing) against one worker with
    both cores and larger micro-batches: the same equal-length sequences, the same global batch, one after the other.
    ``shape_shipped_tokens_per_s`` is the shipped config's row (read the config after changing it)."""
    from benchmarks.train import long_examples, ours
    from nat_ray.storage import write_jsonl

    steps, max_length, batch = (3, 384, 8) if quick else (6, 512, 8)
    data = workdir / "shape.jsonl"
    write_jsonl(data, (e.to_row() for e in long_examples(model, full, max_length)[: batch * (steps + 1)]))
    rows = {}
    for name, extra in SHAPES.items():
        settings = (
            f"train.gradient_checkpointing={str(shipped.gradient_checkpointing).lower()}",
            f"train.num_workers={shipped.num_workers}",
            f"train.cpus_per_worker={shipped.cpus_per_worker}",
            *extra,
        )
        micro = next((int(x.split("=")[1]) for x in extra if "micro_batch_size" in x), shipped.micro_batch_size)
        r = ours(workdir, model, data, steps, max_length, micro, batch, shipped.strategy, settings, tag=f"-{name}")
        rows[name] = {"overrides": list(extra), **{k: r[k] for k in ("tokens_per_s", "peak_rss_gb", "seconds")}}
        print(f"  {name:<32}{r['tokens_per_s']:>9.1f} tokens/s  peak {r['peak_rss_gb']:.2f} GB/worker", flush=True)
    return {"shapes": rows, "shape_steps": steps, "shape_max_length": max_length, "shape_batch": batch,
            "shape_shipped_tokens_per_s": rows["shipped"]["tokens_per_s"]}  # fmt: skip
