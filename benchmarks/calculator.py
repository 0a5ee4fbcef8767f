"""Safe calculator vs the paper's plain SymPy calculator, side by side in one run.

    python benchmarks/calculator.py [--quick] [--json PATH] [--data-dir DIR]

Workload: every ``<<expr=value>>`` calculator annotation in GSM8K train (23,716 expressions; ``--quick``: 2,000
sampled). For each expression the three calculators run back to back in a rotating order, so machine noise hits
them alike:

- ``plain``: ``simplify(sympify(expr))`` with the paper's formatting (unsafe: sympify evaluates Python);
- ``safe in-process``: nat_ray's whitelisted AST -> SymPy builder, same formatting, no timeout;
- ``safe isolated``: :class:`nat_ray.tools.calculator.Calculator`, the same evaluation in a worker process with a
  hard per-call timeout (what the rollout uses).

Reports latency p50/p99, sequential throughput, and observation mismatches against plain. JSON headline:
``p50_ratio`` = safe isolated p50 / plain p50 (target <= 1.5).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nat_ray.storage import write_json
from nat_ray.tasks import resolve_data_dir
from nat_ray.tools.calculator import Calculator
from nat_ray.tools.safe_sympy import evaluate


def plain_sympy(expression: str) -> str:
    """The paper's calculator (unsafe: sympify evaluates Python). Only for trusted input: comparisons."""
    try:
        result = sp.simplify(sp.sympify(expression))
        if result.is_number:
            return str(result) if isinstance(result, sp.Rational) else f"{float(result):g}"
        return str(result)
    except Exception as exc:
        return f"Error: {exc}"


def gsm8k_annotations(data_dir: Path) -> list[str]:
    exprs: list[str] = []
    with open(data_dir / "gsm8k/train.jsonl", encoding="utf-8") as f:
        for line in f:
            exprs += re.findall(r"<<([^=<>]*)=", line)
    return exprs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 expressions instead of all")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    exprs = gsm8k_annotations(resolve_data_dir(args.data_dir))
    total = len(exprs)
    if args.quick:
        exprs = random.Random(0).sample(exprs, 2000)

    isolated = Calculator(timeout_s=5.0)
    calculators = {"plain": plain_sympy, "safe in-process": evaluate, "safe isolated": isolated}
    for e in exprs[:50]:  # warm-up: imports, caches, worker start
        for fn in calculators.values():
            fn(e)

    times: dict[str, list[float]] = {name: [] for name in calculators}
    outputs: dict[str, list[str]] = {name: [] for name in calculators}
    names = list(calculators)
    for i, e in enumerate(exprs):
        order = names[i % 3 :] + names[: i % 3]
        for name in order:
            t0 = time.perf_counter()
            out = calculators[name](e)
            times[name].append(time.perf_counter() - t0)
            outputs[name].append(out)
    isolated.close()

    plain_p50 = statistics.median(times["plain"])
    rows = {}
    for name in names:
        ts = times[name]
        rows[name] = {
            "p50_ms": statistics.median(ts) * 1e3,
            "p99_ms": percentile(ts, 0.99) * 1e3,
            "throughput_per_s": len(ts) / sum(ts),
            "p50_vs_plain": statistics.median(ts) / plain_p50,
            "mismatches_vs_plain": sum(a != b for a, b in zip(outputs[name], outputs["plain"], strict=True)),
        }

    print(f"calculator benchmark: {len(exprs)} GSM8K train annotations (of {total}), interleaved")
    print(f"{'calculator':<17}{'p50 ms':>9}{'p99 ms':>9}{'expr/s':>9}{'p50/plain':>11}{'mismatches':>12}")
    for name, r in rows.items():
        print(
            f"{name:<17}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['throughput_per_s']:>9.0f}"
            f"{r['p50_vs_plain']:>11.2f}{r['mismatches_vs_plain']:>12}"
        )
    result = {
        "p50_ratio": rows["safe isolated"]["p50_vs_plain"],
        "p50_ratio_in_process": rows["safe in-process"]["p50_vs_plain"],
        "expressions": len(exprs),
        "quick": args.quick,
        "calculators": rows,
    }
    print(f"p50_ratio (safe isolated / plain): {result['p50_ratio']:.2f}  (target <= 1.5)")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
