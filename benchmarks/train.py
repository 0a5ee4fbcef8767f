"""Training: the nat_ray loop vs plain transformers.Trainer + DeepSpeed (throughput, peak memory), ddp vs deepspeed,
and padding efficiency.

    python benchmarks/train.py [--quick] [--json PATH]

Same model (SmolLM2-135M-Instruct on CPU), same data (StrategyQA NAT examples built from the shipped GPT-3.5
trajectories), same tokenisation and loss mask, same batch sizes and length grouping, same machine, one after the
other in one run:

- ``nat_ray``: Ray Train TorchTrainer, 2 workers (gloo on CPU), ``nat_ray.training.loop`` with DeepSpeed ZeRO-3
  (``cluster/deepspeed_zero3.json``) and the settings of the shipped config
  (``configs/train_smollm2_strategyqa_nat.yaml``: its micro-batch size and gradient-checkpointing setting; the loss
  applies the LM head only where labels count);
- ``hf_trainer``: ``transformers.Trainer`` with the same DeepSpeed config under ``torchrun --nproc_per_node 2``, as
  the paper's ``train/train.py`` (``benchmarks/hf_trainer_baseline.py``; full-vocabulary logits, the model's loss);
- ``nat_ray ddp``: the nat_ray loop with ``train.strategy=ddp`` (plain PyTorch DDP under Ray Train, 2 workers).

These three run in float32 (``train.bf16=off``), as the baseline does. Part (3) runs the shipped config's settings
twice, ``train.bf16: auto`` (bfloat16 autocast where the CPU has AMX / AVX512-BF16, fp32 weights and AdamW states)
and ``off``: ``bf16_speedup`` (auto / off tokens/s) and ``bf16_loss_gap`` (relative difference of the mean loss over
the last half of the steps). Part (4), ``--part shape`` only, runs the shipped config in bf16 as shipped and in other
shapes (workers x cores, micro-batch, activation checkpointing) on the same 512-token sequences:
``shape_shipped_tokens_per_s`` and each shape's tokens/s and peak memory (``shapes``). The speed part
(``benchmarks/train_speed.py``) profiles a step on the math main job's set, measures this CPU's matmul limit and runs
the main job's training config plain and as shipped: ``shipped_tokens_per_s``, ``shipped_mfu``, ``speed_loss_gap``.

Throughput is non-pad tokens per second over the optimizer steps after the first (start-up and the first step are
left out on both sides). The loops order examples differently and attention cost grows with length, so the runs use
only examples at least ``max_length`` tokens long, each cut to exactly ``max_length``: no padding on any side. Peak
memory is the largest worker's resident set, sampled every 50 ms through the whole run. Padding efficiency (non-pad /
all tokens) is computed over every micro-batch of one epoch of the whole StrategyQA NAT set with length grouping vs
random batches. JSON keys: ``throughput_ratio`` (nat_ray / hf_trainer tokens/s), ``memory_ratio`` (nat_ray /
hf_trainer peak memory per worker), ``strategy_speedup`` (ddp / deepspeed tokens/s), ``padding_efficiency``
(grouped), with the details beside them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def build_set(workdir: Path, data: Path) -> Path:
    from nat_ray.nat_import import ImportConfig, import_nat
    from nat_ray.reformat import BuildConfig, build

    sq = data / "nat/dataset/strategyqa"
    files = [str(sq / "strategyqa_gpt-3.5_positive.json"), str(sq / "strategyqa_gpt-3.5_negative.json")]
    import_nat(ImportConfig(task="strategyqa", questions=str(sq / "train.jsonl"), out=str(workdir / "t"), files=files))
    prompts = data / "nat/prompts/StrategyQA/StrategyQA_conversation.json"
    out = workdir / "nat.jsonl"
    build(
        BuildConfig(
            trajectories=str(workdir / "t"), prompts=str(prompts), mode="nat", pos_num=-1, neg_num=-1, out=str(out)
        )
    )
    return out


def padding(model: Path, data: Path, micro: int, max_length: int) -> dict:
    from transformers import AutoTokenizer

    from nat_ray.storage import read_examples
    from nat_ray.training.data import batch_order, padding_efficiency
    from nat_ray.training.tokenize import encode_all

    encoded, _ = encode_all(AutoTokenizer.from_pretrained(model), read_examples(data), max_length, drop_no_loss=True)
    lengths = [len(e.input_ids) for e in encoded]
    return {
        "examples": len(lengths),
        "micro_batch_size": micro,
        "grouped": padding_efficiency(lengths, batch_order(lengths, micro, 0, True)),
        "random": padding_efficiency(lengths, batch_order(lengths, micro, 0, False)),
    }


def long_examples(model: Path, data: Path, max_length: int) -> list:
    """Examples whose sequence is cut to exactly ``max_length`` and still has loss tokens inside it."""
    from transformers import AutoTokenizer

    from nat_ray.storage import read_examples
    from nat_ray.training.tokenize import encode

    tok = AutoTokenizer.from_pretrained(model)
    out = []
    for e in read_examples(data):
        enc = encode(tok, e, max_length)
        if enc.truncated_tokens and enc.loss_tokens:
            out.append(e)
    return out


SHIPPED = REPO / "configs/train_smollm2_strategyqa_nat.yaml"


def ours(
    workdir: Path,
    model: Path,
    data: Path,
    steps: int,
    max_length: int,
    micro: int,
    batch: int,
    strategy: str,
    extra: tuple[str, ...] = (),
    tag: str = "",
) -> dict:
    from nat_ray.config import load_config
    from nat_ray.training.trainer import run_train

    log_every = steps - 1  # nat_ray's reports are sync points: log at the first and last step only
    cfg = load_config(
        SHIPPED,
        [
            f"out={workdir / f'ours-{strategy}-{len(extra)}{tag}'}",
            f"train.strategy={strategy}",
            f"train.log_every={log_every}",
            f"train.model={model}",
            f"train.data={data}",
            f"train.max_steps={steps}",
            f"train.max_length={max_length}",
            f"train.micro_batch_size={micro}",
            f"train.global_batch_size={batch}",
            "train.num_workers=2",
            "train.cpus_per_worker=1",
            "train.checkpoint_every=0",
            "train.check_memory=false",  # measured here, not estimated
            *(("train.compile=false",) if strategy == "deepspeed" else ()),  # (ddp only)
            *extra,
        ],
    )
    summary = run_train(cfg, progress=False)
    rows = [json.loads(x) for x in (Path(summary["out"]) / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["step"] > 1]
    seconds = sum(r["seconds"] for r in timed)
    return {
        "steps_timed": max(r["step"] for r in timed) - 1,  # rows after step 1 cover steps 2..last
        "seconds": seconds,
        "tokens_per_s": sum(r["tokens"] for r in timed) / seconds,
        "padding_efficiency": sum(r["padding_efficiency"] for r in timed) / len(timed),
        "peak_rss_gb": summary["peak_rss_gb_per_worker"],
        "setup_peak_rss_gb": summary["setup_peak_rss_gb_per_worker"],
        "tokens_per_step": sum(r["tokens"] for r in rows) / rows[-1]["step"],
        "losses": {r["step"]: r["loss"] for r in rows},
    }


def hf_trainer(model: Path, data: Path, steps: int, max_length: int, micro: int, batch: int, out: Path) -> dict:
    exe = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(exe),
        "--nproc_per_node",
        "2",
        str(REPO / "benchmarks/hf_trainer_baseline.py"),
        "--model",
        str(model),
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--max-length",
        str(max_length),
        "--micro",
        str(micro),
        "--global-batch",
        str(batch),
        "--json",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=out.parent)
    if r.returncode:
        raise SystemExit(f"hf_trainer baseline failed:\n{r.stderr[-3000:]}")
    return json.loads(out.read_text())


def longest_examples(model: Path, data: Path, n: int) -> list:
    """The ``n`` longest examples (SmolLM2 tokens): the worst case for a config's peak memory."""
    from transformers import AutoTokenizer

    from nat_ray.storage import read_examples
    from nat_ray.training.tokenize import encode

    tok = AutoTokenizer.from_pretrained(model)
    return sorted(read_examples(data), key=lambda e: -len(encode(tok, e, 4096).input_ids))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--part",
        choices=["all", "throughput", "memory", "bf16", "shape", "speed"],
        default="all",
        help="(1) throughput, (2) memory, (3) bf16 vs float32, (4) worker shape and micro-batch (not in all), "
        "speed: the fast step on the math main job's set, or all",
    )
    parser.add_argument("--bf16-strategy", choices=["ddp", "deepspeed"], default=None, help="(3): else the shipped one")
    parser.add_argument("--bf16-steps", type=int, default=20, help="(3): optimizer steps per run (quick: 4)")
    args = parser.parse_args()

    from nat_ray.config import load_config
    from nat_ray.models import prepare
    from nat_ray.ray_init import init_ray
    from nat_ray.storage import write_jsonl
    from nat_ray.tasks import resolve_data_dir

    model = prepare("smollm2")
    shipped = load_config(SHIPPED).train
    assert shipped is not None
    micro = shipped.micro_batch_size
    steps, max_length, batch = (3, 256, 4 * micro) if args.quick else (9, 512, 4 * micro)
    # (1) and (2) compare fp32 loops, as transformers.Trainer runs here; (3) measures what bf16 adds
    off = ("train.gradient_checkpointing=false", "train.bf16=off")
    init_ray()  # embedded, as the stage drivers start it (a start that times out on a busy machine is retried)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        full = build_set(workdir, resolve_data_dir(args.data_dir))
        pad = padding(model, full, micro=shipped.micro_batch_size, max_length=shipped.max_length)
        a = b = c = m_ours = m_hf = bf = shapes = speed = None
        if args.part in ("all", "throughput"):
            # (1) throughput: equal-length sequences, activation checkpointing off on every side
            subset = workdir / "subset.jsonl"
            rows = long_examples(model, full, max_length)[: batch * (steps + 1) * 2]
            write_jsonl(subset, (e.to_row() for e in rows))
            a = ours(workdir, model, subset, steps, max_length, micro, batch, "deepspeed", off)
            b = hf_trainer(model, subset, steps, max_length, micro, batch, workdir / "hf.json")
            c = ours(workdir, model, subset, steps, max_length, micro, batch, "ddp", off)
        if args.part in ("all", "memory"):
            # (2) peak memory: the shipped config's settings vs the baseline, on the longest sequences of the set
            mem_steps, mem_batch = 3, micro * 2
            # --quick: sequences cut to 512 tokens (at the shipped 2,048 the baseline's two ranks took ~23 GB, at 1,024
            # one was still killed for memory beside the embedded Ray cluster)
            mem_length = min(shipped.max_length, 512) if args.quick else shipped.max_length
            longest = workdir / "longest.jsonl"
            write_jsonl(longest, (e.to_row() for e in longest_examples(model, full, mem_batch * (mem_steps + 1) * 2)))
            settings = (
                f"train.gradient_checkpointing={str(shipped.gradient_checkpointing).lower()}",
                f"train.loss_chunk_tokens={shipped.loss_chunk_tokens}",
                f"train.num_workers={shipped.num_workers}",
                f"train.cpus_per_worker={shipped.cpus_per_worker}",
                "train.bf16=off",
            )
            m_ours = ours(workdir, model, longest, mem_steps, mem_length, micro, mem_batch, shipped.strategy, settings)
            m_hf = hf_trainer(model, longest, mem_steps, mem_length, micro, mem_batch, workdir / "hf_mem.json")
        if args.part in ("all", "bf16"):
            bf = bf16_runs(workdir, model, full, shipped, args.quick, args.bf16_strategy, args.bf16_steps)
        if args.part == "shape":
            from benchmarks.train_shape import shape_runs

            shapes = shape_runs(workdir, model, full, shipped, args.quick)
        if args.part in ("all", "speed"):
            from benchmarks.train_speed import speed_runs

            speed = speed_runs(workdir, model, resolve_data_dir(args.data_dir), args.quick)
    result: dict = {
        "quick": args.quick,
        "padding_efficiency": pad["grouped"],
        "padding_efficiency_random": pad["random"],
        "padding": pad,
        "gpu": "not measured: no GPU was lent to this session",
    }
    if a is not None:
        result |= throughput_report(a, b, c, steps, max_length, micro, batch)
    if m_ours is not None:
        result |= memory_report(m_ours, m_hf, shipped, micro, mem_batch)
    if bf is not None:
        result |= bf16_report(*bf)
    if shapes is not None:
        result |= shapes
    if speed is not None:
        result |= speed
    print(
        f"padding efficiency over {pad['examples']} StrategyQA NAT examples, micro-batch {pad['micro_batch_size']}: "
        f"grouped {pad['grouped']:.3f}, random {pad['random']:.3f} (target >= 0.9)"
    )
    if args.json:
        from nat_ray.storage import write_json

        write_json(args.json, result)


def bf16_runs(  # type: ignore[no-untyped-def]
    workdir: Path, model: Path, full: Path, shipped, quick: bool, strategy: str | None, steps: int
) -> tuple:
    """(3) The shipped config's settings (strategy, workers, micro-batch, checkpointing, loss chunks) with
    ``train.bf16: auto`` and with ``off``, on the same equal-length sequences, one after the other; a loss logged at
    every step, for the loss gap over the last half of the run."""
    from nat_ray.storage import write_jsonl

    per_step = shipped.micro_batch_size * shipped.num_workers  # the shipped shape: one micro-batch per worker
    # (quick: 384 tokens; at 128 no StrategyQA NAT example has a labelled token before the cut)
    steps, max_length, batch = (4, 384, per_step) if quick else (steps, 512, max(4, per_step))
    strategy = strategy or shipped.strategy
    data = workdir / "bf16.jsonl"
    write_jsonl(data, (e.to_row() for e in long_examples(model, full, max_length)[: batch * (steps + 1)]))
    settings = (
        f"train.gradient_checkpointing={str(shipped.gradient_checkpointing).lower()}",
        f"train.loss_chunk_tokens={shipped.loss_chunk_tokens}",
        f"train.num_workers={shipped.num_workers}",
        f"train.cpus_per_worker={shipped.cpus_per_worker}",
        "train.log_every=1",
    )
    micro = shipped.micro_batch_size
    runs = {}
    for name in ("auto", "off"):
        runs[name] = ours(
            workdir, model, data, steps, max_length, micro, batch, strategy, (*settings, f"train.bf16={name}"),
            tag=f"-bf16-{name}",
        )  # fmt: skip
    return runs["auto"], runs["off"], steps, max_length, batch, strategy


def bf16_report(auto: dict, off: dict, steps: int, max_length: int, batch: int, strategy: str) -> dict:
    from nat_ray.hardware import resolve_bf16

    chosen = resolve_bf16("auto", "train.bf16", cuda=False)
    half = [s for s in auto["losses"] if s > steps // 2]
    mean_auto = sum(auto["losses"][s] for s in half) / len(half)
    mean_off = sum(off["losses"][s] for s in half) / len(half)
    speedup = auto["tokens_per_s"] / off["tokens_per_s"]
    gap = abs(mean_auto - mean_off) / mean_off
    print(
        f"(3) bf16: the shipped settings ({strategy}, 2 workers), {steps} steps x {batch} sequences of {max_length} "
        f"tokens; train.bf16: auto chose {chosen.name} ({chosen.reason})"
    )
    print(f"{'train.bf16':<12}{'tokens/s':>10}{'peak GB/worker':>16}{'mean loss, last half':>22}")
    for name, r, m in (("auto", auto, mean_auto), ("off", off, mean_off)):
        print(f"{name:<12}{r['tokens_per_s']:>10.1f}{r['peak_rss_gb']:>16.2f}{m:>22.4f}")
    print(f"bf16_speedup = {speedup:.3f} (target >= 1.8); bf16_loss_gap = {gap:.4f} (target <= 0.02)")
    return {
        "bf16_speedup": speedup,
        "bf16_loss_gap": gap,
        "bf16": {
            "chosen": chosen.name,
            "reason": chosen.reason,
            "settings": {"steps": steps, "max_length": max_length, "global_batch_size": batch, "strategy": strategy},
            "auto": auto,
            "off": off,
        },
    }


def throughput_report(a: dict, b: dict, c: dict, steps: int, max_length: int, micro: int, batch: int) -> dict:
    ratio = a["tokens_per_s"] / b["tokens_per_s"]
    speedup = c["tokens_per_s"] / a["tokens_per_s"]
    print(
        f"(1) throughput, SmolLM2-135M fp32, 2 CPU workers, {steps} steps x {batch} sequences of {max_length} tokens, "
        f"micro-batch {micro}, activation checkpointing off"
    )
    print(f"{'loop':<22}{'tokens/s':>10}{'peak GB/worker':>16}")
    for name, r in (("nat_ray deepspeed", a), ("hf_trainer deepspeed", b), ("nat_ray ddp", c)):
        print(f"{name:<22}{r['tokens_per_s']:>10.1f}{r['peak_rss_gb']:>16.2f}")
    print(f"throughput_ratio = {ratio:.3f} (nat_ray / hf_trainer, deepspeed on both, target >= 1.0)")
    print(f"strategy_speedup = {speedup:.3f} (nat_ray ddp / nat_ray deepspeed tokens/s)")
    return {
        "throughput_ratio": ratio,
        "strategy_speedup": speedup,
        "settings": {"steps": steps, "max_length": max_length, "micro_batch_size": micro, "global_batch_size": batch},
        "nat_ray": a,
        "hf_trainer": b,
        "nat_ray_ddp": c,
    }


def memory_report(m_ours: dict, m_hf: dict, shipped, micro: int, mem_batch: int) -> dict:  # type: ignore[no-untyped-def]
    memory_ratio = m_ours["peak_rss_gb"] / m_hf["peak_rss_gb"]
    ckpt = "on" if shipped.gradient_checkpointing else "off"
    print(
        f"(2) peak memory per worker on the longest examples ({m_ours['tokens_per_step'] / mem_batch:.0f} tokens "
        f"on average), micro-batch {micro}: nat_ray with the shipped settings ({shipped.strategy}, checkpointing "
        f"{ckpt}) {m_ours['peak_rss_gb']:.2f} GB vs hf_trainer deepspeed {m_hf['peak_rss_gb']:.2f} GB"
    )
    print(f"memory_ratio = {memory_ratio:.3f} (target <= 0.6)")
    return {
        "memory_ratio": memory_ratio,
        "memory": {"nat_ray_shipped": m_ours, "hf_trainer": m_hf, "shipped": shipped.model_dump(mode="json")},
    }


if __name__ == "__main__":
    main()
