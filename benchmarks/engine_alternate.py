"""Two or more engines on ``benchmarks/eval.py``'s workload (b), alternating, to tell an engine's speed from the
machine's drift.

    python benchmarks/engine_alternate.py --engines openvino_ir_float32,openvino_float32 [--rounds 2]
                                          [--openvino IR_FOLDER] [--episodes 64] [--quick] [--json PATH]

``eval.py`` runs its rows once each, in a fixed order, so a machine that speeds up or slows down during the run
moves the later rows' figures; here each round runs every engine once (each in a fresh process, as in ``eval.py``),
and the mean over rounds is what is compared. Engine names are ``eval.py``'s (``openvino``, ``openvino_float32``,
``cached``, ...; ``openvino_ir*`` need ``--openvino``). ``ratio``: the first engine's mean tokens/s over the second's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval import _isolated, _measure_episodes
from nat_ray.storage import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", required=True, help="comma-separated eval.py engine names, two or more")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--openvino", default=None, help="an OpenVINO IR of SmolLM2 made elsewhere (openvino_ir rows)")
    parser.add_argument("--episodes", type=int, default=None, help="GSM8K episodes, all in flight (64; quick 8)")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per reply at most (128; quick 32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    names = args.engines.split(",")
    if len(names) < 2:
        parser.error("--engines: name two or more")
    args.episodes = args.episodes or (8 if args.quick else 64)
    args.max_tokens = args.max_tokens or (32 if args.quick else 128)
    args.loop_episodes = None
    runs: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.rounds):
        for name in names:
            row, _ = _isolated(_measure_episodes, name, args)
            runs[name].append(row["tokens_per_s"])
            print(
                f"  round {i + 1} {name:<22} {row['tokens_per_s']:7.1f} tokens/s ({row['seconds']:.1f} s)", flush=True
            )
    means = {n: statistics.mean(v) for n, v in runs.items()}
    ratio = means[names[0]] / means[names[1]]
    print(f"ratio = {ratio:.3f} ({names[0]} over {names[1]}, mean tokens/s over {args.rounds} rounds)")
    if args.json:
        write_json(args.json, {"engines": names, "rounds": args.rounds, "episodes": args.episodes,
                               "tokens_per_s": runs, "mean_tokens_per_s": means, "ratio": ratio})  # fmt: skip


if __name__ == "__main__":
    main()
