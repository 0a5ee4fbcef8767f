"""One decode step, and one prefill, by how many rows share it: the default engine beside OpenVINO GenAI.

    python benchmarks/decode_step.py [--quick] [--json PATH] [--openvino IR_FOLDER] [--rows 1,4,16] [--tokens 48]

Where ``benchmarks/eval.py``'s multi-turn replay (c) spends its time. For each row count R, R prompts (the StrategyQA
replay's conversations after their first search, ~500 tokens each; greedy, no stop string) go to a fresh engine
at once, each engine in a fresh process: first with ``max_tokens`` 1 (``prefill_tokens_per_s``: prompt tokens over
the seconds, nothing cached yet), then again with 1 and with ``--tokens`` (the prompts now cached):
``step_ms`` = the extra seconds over the extra decode steps. Engines: the transformers engine's ``cached`` and
OpenVINO GenAI in float32 on the project's export (``openvino_float32``, its greedy replies equal to
``generate``'s), and with ``--openvino IR_FOLDER`` on that IR too (``openvino_ir_float32``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine_rows import conversations, isolated, make_engine
from nat_ray.policy.base import SamplingParams
from nat_ray.storage import write_json


def _measure(name: str, rows: int, args) -> dict:
    convs = conversations(argparse.Namespace(conversations=rows, quick=False, data_dir=args.data_dir))
    prompts = [head + turns[:3] for head, turns in convs]  # the task prompt, the question, a reply, an observation
    eng, dtype = make_engine(name, rows, args)

    async def call(max_tokens: int) -> tuple[float, int, int]:
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=())
        t0 = time.monotonic()
        done = await asyncio.gather(*(eng.generate(p, params) for p in prompts))
        return time.monotonic() - t0, sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done)

    cold, prompt_tokens, _ = asyncio.run(call(1))
    warm, _, one = asyncio.run(call(1))
    full, _, many = asyncio.run(call(args.tokens))
    eng.close()
    steps = (many - one) / rows  # every row decodes until max_tokens (no stop string) unless it ends the text
    return {"engine": name, "dtype": dtype, "rows": rows, "prompt_tokens": prompt_tokens,
            "prefill_tokens_per_s": prompt_tokens / cold, "steps": steps,
            "step_ms": 1000 * (full - warm) / steps if steps else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="rows 1,2 and 8 tokens")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--openvino", default=None, help="an OpenVINO IR of SmolLM2 made elsewhere: adds its row")
    parser.add_argument("--rows", default=None, help="comma-separated row counts (1,4,16; quick 1,2)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens decoded per row (48; quick 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the engines")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    rows = [int(r) for r in (args.rows or ("1,2" if args.quick else "1,4,16")).split(",")]
    args.tokens = args.tokens or (8 if args.quick else 48)
    engines = ["cached", "openvino_float32"] + (["openvino_ir_float32"] if args.openvino else [])
    results = []
    for name in engines:
        for r in rows:
            row = isolated(_measure, name, r, args)
            results.append(row)
            print(f"  {name:<17} rows {r:3d}: prefill {row['prefill_tokens_per_s']:7.1f} tokens/s, decode step "
                  f"{row['step_ms'] or float('nan'):7.1f} ms", flush=True)  # fmt: skip
    out: dict = {"quick": args.quick, "tokens": args.tokens, "rows": rows, "results": results}
    # the transformers engine's step time over OpenVINO's (the project's export), per row count (> 1: slower)
    by = {(r["engine"], r["rows"]): r for r in results}
    out["step_vs_openvino"] = {str(r): by["cached", r]["step_ms"] / by["openvino_float32", r]["step_ms"]
                               for r in rows}  # fmt: skip
    print(f"step_vs_openvino = {out['step_vs_openvino']}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
