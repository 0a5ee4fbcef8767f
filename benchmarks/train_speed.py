"""The speed part of ``benchmarks/train.py`` (``--part speed``, and in ``all``): where a training step's time goes,
and what the fast step (compiled decoder layers, eager attention, fused AdamW) gains, on the math main job's
training set.

    python benchmarks/train.py --part speed [--quick] [--json PATH]

On the same gold GSM8K trajectories (``collect.kind: gold``, built as the main job's vanilla set), one after the
other in one run:

- the matmul limit of this CPU: the bf16 matmuls of one step of the main job's shape (every linear layer's forward,
  input-gradient and weight-gradient products at its token count, the LM head on the labelled tokens only), timed
  alone at the worker's thread count; tokens / their seconds is the most any loop could train here (attention,
  norms and the optimizer cost nothing in it). ``mfu`` is a row's tokens/s over that limit;
- a profile of one process's steps (no Ray), the plain step and the shipped one: the share of time per kind of
  operator;
- AdamW's step over the model's parameters: the loop's former per-tensor path (``foreach=False``) vs the fused one;
- Ray Train runs of the main job's train section (``configs/quickstart.yaml``: one worker with both cores,
  micro-batch 4, bf16 autocast) as ``plain`` (sdpa attention, no compile), ``eager`` (eager attention) and
  ``shipped`` (as the config ships it), a loss logged at every step. Tokens/s leaves step 1 out (start-up and
  compilation); ``speed_loss_gap`` is the relative difference of the mean loss over the last half of the steps,
  shipped vs plain.
"""

from __future__ import annotations

import time
from pathlib import Path

MAIN_JOB = Path(__file__).resolve().parents[1] / "configs/quickstart.yaml"
ROWS = {
    "plain": ("train.compile=false", "train.attn_implementation=sdpa"),
    "eager": ("train.compile=false", "train.attn_implementation=eager"),
    "shipped": (),
}


def math_set(workdir: Path, data_dir: Path, n: int) -> Path:
    """The first ``n`` gold GSM8K trajectories as a vanilla training set (the main job's positives)."""
    from nat_ray.gold import collect_gold
    from nat_ray.reformat import BuildConfig, build
    from nat_ray.tasks import get_task, prompts_file

    collect_gold("gsm8k", data_dir / "gsm8k/train.jsonl", workdir / "gold", limit=2 * n)  # some are left out
    out = workdir / "math.jsonl"
    prompts = str(prompts_file(get_task("gsm8k"), data_dir))
    build(BuildConfig(trajectories=str(workdir / "gold"), prompts=prompts, mode="vanilla", pos_num=n, neg_num=0,
                      out=str(out)))  # fmt: skip
    return out


def _encoded(model: Path, data: Path, max_length: int) -> list:
    from transformers import AutoTokenizer

    from nat_ray.storage import read_examples
    from nat_ray.training.tokenize import encode_all

    return encode_all(AutoTokenizer.from_pretrained(model), read_examples(data), max_length, True)[0]


def _timed(f, reps: int) -> float:  # type: ignore[no-untyped-def]
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps


def matmul_limit(model: Path, tokens: int, labelled: int, threads: int, reps: int) -> dict:
    """Seconds of the bf16 matmuls of one micro-batch of ``tokens`` tokens (``labelled`` of them with a label)."""
    import torch
    from transformers import AutoConfig

    torch.set_num_threads(threads)
    c = AutoConfig.from_pretrained(model)
    h, i, kv = c.hidden_size, c.intermediate_size, c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    layer = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o, gate up down: (in, out)

    def products(m: int, n_in: int, n_out: int) -> float:
        x = torch.randn(m, n_in, dtype=torch.bfloat16)
        w = torch.randn(n_out, n_in, dtype=torch.bfloat16)
        g = torch.randn(m, n_out, dtype=torch.bfloat16)
        return sum(_timed(f, reps) for f in (lambda: x @ w.t(), lambda: g @ w, lambda: g.t() @ x))

    seconds = c.num_hidden_layers * sum(products(tokens, a, b) for a, b in layer)
    seconds += products(labelled, h, c.vocab_size)
    flops = 6 * tokens * c.num_hidden_layers * sum(a * b for a, b in layer) + 6 * labelled * h * c.vocab_size
    return {"tokens": tokens, "labelled": labelled, "seconds": seconds, "gflops": flops / seconds / 1e9,
            "tokens_per_s": tokens / seconds, "threads": threads}  # fmt: skip


def _profile_step(model: Path, encoded: list, micro: int, steps: int, compiled: bool, attn: str) -> dict:
    """Shares of one process's step time by kind of operator (the plain step: sdpa, no compile)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM

    from nat_ray.training.data import collate
    from nat_ray.training.loss import AssistantLoss
    from nat_ray.training.speed import adamw_kwargs, compile_layers

    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation=attn)
    lm.config.use_cache = False
    if compiled:
        compile_layers(lm)
    module = AssistantLoss(lm, 256).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-5, **adamw_kwargs(False))
    batches = [encoded[s * micro : (s + 1) * micro] for s in range(steps + 1)]

    def step(rows: list) -> None:
        batch = collate([r.input_ids for r in rows], [r.labels for r in rows], 0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = module(**batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])  # compiles
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for rows in batches[1:]:
            step(rows)
        wall = time.perf_counter() - t
    kinds = {"matmuls": ("aten::mm", "aten::bmm", "aten::addmm"), "attention kernel": ("scaled_dot_product",),
             "compiled (fused) graphs": ("CompiledFxGraph",), "copies (autocast casts)": ("aten::copy_", "_to_copy"),
             "optimizer": ("Optimizer.step", "adam")}  # fmt: skip
    shares = dict.fromkeys(kinds, 0.0)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    for e in prof.key_averages():
        kind = next((k for k, names in kinds.items() if any(n in e.key for n in names)), "other")
        shares[kind] = shares.get(kind, 0.0) + e.self_cpu_time_total / total
    tokens = sum(len(r.input_ids) for rows in batches[1:] for r in rows)
    return {"tokens_per_s": tokens / wall, "shares": shares}


def adamw_step(model: Path, reps: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    out = {}
    for name, kwargs in (("per_tensor", {"foreach": False}), ("fused", {"fused": True})):
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        for p in lm.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opt = torch.optim.AdamW(lm.parameters(), lr=1e-5, **kwargs)
        out[name] = _timed(opt.step, reps)
    return out


def speed_runs(workdir: Path, model: Path, data_dir: Path, quick: bool) -> dict:
    from benchmarks.train import ours
    from nat_ray.config import load_config

    main = load_config(MAIN_JOB).train
    assert main is not None
    steps = 6 if quick else 16
    per_step = main.global_batch_size
    data = math_set(workdir, data_dir, per_step * (steps + 1))
    encoded = _encoded(model, data, main.max_length)
    tokens = main.micro_batch_size * sum(len(e.input_ids) for e in encoded) // len(encoded)
    labelled = main.micro_batch_size * sum(e.loss_tokens for e in encoded) // len(encoded)
    limit = matmul_limit(model, tokens, labelled, main.cpus_per_worker, 2 if quick else 5)
    print(f"(speed) matmul limit: {limit['gflops']:.0f} GFLOPS -> {limit['tokens_per_s']:.0f} tokens/s", flush=True)
    profiles = {
        name: _profile_step(model, encoded, main.micro_batch_size, 2 if quick else 4, compiled, attn)
        for name, compiled, attn in (("plain", False, "sdpa"), ("shipped", main.compile, main.attn_implementation))
    }
    adam = adamw_step(model, 2 if quick else 5)
    settings = (
        f"train.num_workers={main.num_workers}", f"train.cpus_per_worker={main.cpus_per_worker}",
        f"train.gradient_checkpointing={str(main.gradient_checkpointing).lower()}", "train.log_every=1",
        f"train.compile={str(main.compile).lower()}", f"train.attn_implementation={main.attn_implementation}",
    )  # fmt: skip
    rows = {}
    for name, extra in ROWS.items():
        r = ours(workdir, model, data, steps, main.max_length, main.micro_batch_size, per_step, main.strategy,
                 (*settings, *extra), tag=f"-speed-{name}")  # fmt: skip
        rows[name] = {k: r[k] for k in ("tokens_per_s", "peak_rss_gb", "seconds", "losses")}
        rows[name]["mfu"] = r["tokens_per_s"] / limit["tokens_per_s"]
        print(f"  {name:<10}{r['tokens_per_s']:>9.1f} tokens/s  mfu {rows[name]['mfu']:.2f}  "
              f"peak {r['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
    half = [s for s in rows["plain"]["losses"] if s > steps // 2]

    def mean(name: str) -> float:
        return sum(rows[name]["losses"][s] for s in half) / len(half)

    gap = abs(mean("shipped") - mean("plain")) / mean("plain")
    speedup = rows["shipped"]["tokens_per_s"] / rows["plain"]["tokens_per_s"]
    print(f"shipped_tokens_per_s = {rows['shipped']['tokens_per_s']:.1f} ({speedup:.2f}x plain); speed_loss_gap = "
          f"{gap:.4f}; AdamW step {adam['per_tensor']:.3f} s per-tensor vs {adam['fused']:.3f} s fused")  # fmt: skip
    return {
        "shipped_tokens_per_s": rows["shipped"]["tokens_per_s"],
        "speed_loss_gap": gap,
        "speed_speedup": speedup,
        "matmul_limit_tokens_per_s": limit["tokens_per_s"],
        "shipped_mfu": rows["shipped"]["mfu"],
        "speed": {
            "config": str(MAIN_JOB.name),
            "steps": steps,
            "limit": limit,
            "rows": rows,
            "profile": profiles,
            "adamw_seconds": adam,
        },
    }
