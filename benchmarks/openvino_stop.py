"""OpenVINO GenAI with and without its own stop-string matching, on GSM8K eval episodes: speed and transcripts.

    python benchmarks/openvino_stop.py [--quick] [--model CHECKPOINT] [--episodes 64] [--rounds 2] [--json PATH]

The engine (``nat_ray.policy.openvino_engine``) stops a reply at its stop string in its own loop (``hits_stop``, as
every engine); until 2026-12-06 it also gave OpenVINO GenAI the stop strings (``GenerationConfig.stop_strings``),
whose matching detokenizes every running reply in the sampler's threads at every step, and once deadlocked there.
Rows, each in a fresh process (``benchmarks/engine_rows.isolated``), in A B B A order over ``--rounds``:
``loop_stop`` (the engine as it ships) and ``genai_stop`` (the same engine with the stop strings handed to OpenVINO
GenAI too). Workload (b) of ``benchmarks/eval.py``: every episode in flight at once, greedy, float32 (the eval's
precision), ReAct stop ``\\nObservation:``; the transcripts of the two rows are compared episode by episode. The
base model rarely writes a second turn: ``--model`` a fine-tuned checkpoint (NAT's, whose prompt is the template's
correct hint) makes the stop strings matter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine_rows import measure_episodes, run_rows
from nat_ray.storage import write_json

ROWS = ("loop_stop", "genai_stop")


def _measure(row: str, args) -> tuple[dict, list]:
    from nat_ray.policy import openvino_engine

    if row == "genai_stop":  # the engine before 2026-12-06: OpenVINO GenAI matches the stop strings as well
        config = openvino_engine.OVEngine._config

        def with_stop(self, params):
            gc = config(self, params)
            gc.stop_strings = set(params.stop)
            return gc

        openvino_engine.OVEngine._config = with_stop
    result, replies = measure_episodes("openvino_float32", args)
    return result | {"name": row}, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 episodes of 16 tokens, one round")
    parser.add_argument("--model", default=None, help="a checkpoint of nat-ray train (default: smollm2)")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.rounds, args.max_tokens = 4, 1, 16
    args.loop_episodes, args.openvino = None, None
    rows, replies = run_rows(list(ROWS), args.rounds, _measure, args)
    by = {r["name"]: r for r in rows}
    same = sum(a == b for a, b in zip(replies["loop_stop"], replies["genai_stop"], strict=True))
    out = {
        "model": args.model or "smollm2",
        "episodes": args.episodes,
        "rounds": args.rounds,
        "rows": rows,
        "loop_over_genai": by["loop_stop"]["episodes_per_s"] / by["genai_stop"]["episodes_per_s"],
        "same_transcripts": same,
    }
    print(f"loop_over_genai = {out['loop_over_genai']:.2f}x episodes/s; same transcripts {same} of {args.episodes}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
