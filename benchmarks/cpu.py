"""What this CPU gives the project's model work: its matmul rate per number format, and a training step's rate.

    python benchmarks/cpu.py [--model smollm2] [--steps 4] [--quick] [--json PATH]

Every time in these docs is a CPU's: the same 2-core job runs ~10x faster on a CPU that multiplies bfloat16 natively
(Intel AMX, AVX512-BF16) than on one with AVX2 alone. This names the machine a figure comes from and says what to
expect from it before a long run:

- the CPU (model name, family / model, the bf16 instruction sets ``nat_ray.hardware`` looks for) and the precision
  ``auto`` picks for training and the engine;
- the matmul rate (GFLOPS) in float32 and bfloat16 at SmolLM2-135M's shapes: a decode step's (64 rows) and a
  training micro-batch's (1,536 tokens), on 1 thread and on every core;
- a training step of SmolLM2-135M-Instruct (4 sequences of ~375 tokens, the math main job's micro-batch; forward,
  backward, fused AdamW) in the precision ``auto`` picks: tokens/s, and the share of the matmul limit it reaches
  (~0.81 GFLOP per trained token).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLOP_PER_TOKEN = 0.81e9  # SmolLM2-135M forward + backward, linear layers and LM head (benchmarks/train_speed.py)
SHAPES = {"decode (64 rows)": 64, "train (1,536 tokens)": 1536}


def cpu_name() -> dict:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in info:
                info[key] = value.strip()
    except OSError:
        info["model name"] = platform.processor()
    return info


def gflops(dtype: object, m: int, threads: int, seconds: float = 1.0) -> float:
    """A (m x 576) @ (576 x 1536) product, SmolLM2's hidden-to-MLP shape, repeated for ``seconds``."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * m * 576 * 1536 * n / (time.perf_counter() - start) / 1e9


def train_steps(model: Path, bf16: bool, steps: int, threads: int) -> list[float]:
    """tokens/s of ``steps`` steps after a first (warm-up) one, micro-batch 4 of lengths around 375."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation="sdpa")
    lm.config.use_cache = False
    lm.train()
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-5, fused=True)
    rates = []
    for i in range(steps + 1):
        x = torch.randint(0, lm.config.vocab_size, (4, 360 + 10 * (i % 4)))
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = lm(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:
            rates.append(x.numel() / (time.perf_counter() - start))
    return rates


def main() -> None:
    import os

    import torch

    from nat_ray.hardware import cpu_bf16_flags, resolve_bf16
    from nat_ray.models import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=4, help="training steps timed (0: matmuls only)")
    parser.add_argument("--quick", action="store_true", help="0.2 s per matmul rate instead of 1 s")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    precision = resolve_bf16("auto", "train.bf16", False)
    result: dict = {"cpu": cpu_name(), "cores": cores, "bf16_flags": cpu_bf16_flags(), "auto": precision.name}
    print(f"cpu: {result['cpu']} | {cores} cores | bf16 instructions: {result['bf16_flags'] or 'none'}")
    print(f"auto precision: {precision.name} ({precision.reason})")
    print("| dtype | shape | 1 thread GFLOPS | all cores GFLOPS |\n|---|---|---:|---:|")
    result["gflops"] = {}
    for dtype in (torch.float32, torch.bfloat16):
        for shape, m in SHAPES.items():
            seconds = 0.2 if args.quick else 1.0
            one, all_ = gflops(dtype, m, 1, seconds), gflops(dtype, m, cores, seconds)
            result["gflops"][f"{str(dtype).removeprefix('torch.')} {shape}"] = [one, all_]
            print(f"| {str(dtype).removeprefix('torch.')} | {shape} | {one:.1f} | {all_:.1f} |")
    if args.steps:
        key = "bfloat16 train (1,536 tokens)" if precision.bf16 else "float32 train (1,536 tokens)"
        limit = result["gflops"][key][1] * 1e9 / FLOP_PER_TOKEN
        rates = train_steps(resolve_model_path(args.model), precision.bf16, args.steps, cores)
        mean = sum(rates) / len(rates)
        result |= {"train_tokens_per_s": mean, "matmul_limit_tokens_per_s": limit, "mfu": mean / limit}
        print(
            f"training step ({precision.name}, micro-batch 4 x ~375 tokens, {len(rates)} steps): {mean:.1f} tokens/s "
            f"({', '.join(f'{r:.1f}' for r in rates)}); matmul limit {limit:.0f} tokens/s; mfu {mean / limit:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
