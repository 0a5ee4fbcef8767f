"""Training throughput of the nat_ray loop vs plain transformers.Trainer + DeepSpeed, and padding efficiency.

    python benchmarks/train.py [--quick] [--json PATH]

Same model (SmolLM2-135M-Instruct), same data (StrategyQA NAT examples built from the shipped GPT-3.5
trajectories), same tokenisation and loss mask, same DeepSpeed ZeRO-3 config, batch sizes and length grouping, same
machine, one after the other in one run:

- ``nat_ray``: Ray Train TorchTrainer, 2 workers (gloo on CPU), ``nat_ray.training.loop``;
- ``hf_trainer``: ``transformers.Trainer`` with the same DeepSpeed config under ``torchrun --nproc_per_node 2``, as
  the paper's ``train/train.py`` (``benchmarks/hf_trainer_baseline.py``).

Throughput is non-pad tokens per second over the optimizer steps after the first (start-up and the first step are
left out on both sides). The two loops order examples differently, and attention cost grows with length, so to
compare the loops and not the length mix, the throughput runs use only examples at least ``max_length`` tokens long:
every sequence is cut to exactly ``max_length``, with no padding, on both sides. Padding efficiency (non-pad / all
tokens) is computed over every micro-batch of one epoch of the whole StrategyQA NAT set with length grouping vs
random batches. JSON keys: ``throughput_ratio`` (nat_ray /
hf_trainer), ``padding_efficiency`` (grouped), with the details beside them.
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


def ours(
    workdir: Path, model: Path, data: Path, steps: int, max_length: int, micro: int, batch: int, log_every: int
) -> dict:
    from nat_ray.config import load_config
    from nat_ray.training.trainer import run_train

    cfg = load_config(
        REPO / "configs/train_smollm2_strategyqa_nat.yaml",
        [
            f"out={workdir / f'ours{log_every}'}",
            f"train.log_every={log_every}",
            f"train.model={model}",
            f"train.data={data}",
            f"train.max_steps={steps}",
            f"train.max_length={max_length}",
            f"train.micro_batch_size={micro}",
            f"train.global_batch_size={batch}",
            "train.num_workers=2",
            "train.checkpoint_every=0",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    import ray

    from nat_ray.models import prepare
    from nat_ray.storage import write_jsonl
    from nat_ray.tasks import resolve_data_dir

    model = prepare("smollm2")
    steps, max_length, micro, batch = (3, 256, 2, 8) if args.quick else (9, 512, 2, 8)
    ray.init(log_to_driver=False, include_dashboard=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        full = build_set(workdir, resolve_data_dir(args.data_dir))
        pad = padding(model, full, micro=4, max_length=2048)
        subset = workdir / "subset.jsonl"  # enough examples for the timed steps on both sides
        examples = long_examples(model, full, max_length)[: batch * (steps + 1) * 2]
        write_jsonl(subset, (e.to_row() for e in examples))
        # nat_ray logging every (steps - 1) steps (its reports are sync points), then every step like the baseline
        a = ours(workdir, model, subset, steps, max_length, micro, batch, log_every=steps - 1)
        b = hf_trainer(model, subset, steps, max_length, micro, batch, workdir / "hf.json")
        a1 = ours(workdir, model, subset, steps, max_length, micro, batch, log_every=1)
    ratio = a["tokens_per_s"] / b["tokens_per_s"]
    print(f"training throughput, SmolLM2-135M, ZeRO-3, 2 CPU workers, {steps} steps x {batch}, max {max_length} tokens")
    print(f"{'loop':<12}{'tokens/s':>10}{'steps timed':>13}")
    print(f"{'nat_ray':<12}{a['tokens_per_s']:>10.1f}{steps - 1:>13}   (metrics every {steps - 1} steps)")
    print(f"{'hf_trainer':<12}{b['tokens_per_s']:>10.1f}{b['steps_timed']:>13}   (logs every step)")
    r1 = a1["tokens_per_s"] / b["tokens_per_s"]
    print(f"{'nat_ray':<12}{a1['tokens_per_s']:>10.1f}{a1['steps_timed']:>13}   (metrics every step: ratio {r1:.3f})")
    print(f"throughput_ratio = {ratio:.3f} (target >= 0.95)")
    print(
        f"padding efficiency over {pad['examples']} StrategyQA NAT examples, micro-batch {pad['micro_batch_size']}: "
        f"grouped {pad['grouped']:.3f}, random {pad['random']:.3f} (target >= 0.9)"
    )
    result = {
        "throughput_ratio": ratio,
        "throughput_ratio_log_every_step": a1["tokens_per_s"] / b["tokens_per_s"],
        "padding_efficiency": pad["grouped"],
        "padding_efficiency_random": pad["random"],
        "quick": args.quick,
        "nat_ray": a,
        "nat_ray_log_every_step": a1,
        "hf_trainer": b,
        "padding": pad,
        "gpu": "not measured: no GPU was lent to this session",
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
