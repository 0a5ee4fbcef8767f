"""Evaluation throughput, each side by side with the paper's loop (one episode at a time).

    python benchmarks/eval.py [--quick] [--json PATH] [--latency 0.5] [--no-engine] [--engines a,b]
                              [--episodes 64] [--conversations N] [--openvino IR_FOLDER] [--rounds R]

(a) Orchestration. The scripted ``arithmetic`` policy with a fixed reply latency L and the real calculator: the
    distributed eval (`run_eval`: env-worker actors, calculator pool, 64 episodes in flight) against a sequential loop
    like the paper's over the same GSM8K + SVAMP test questions. ``speedup_vs_sequential``: steady episodes/s of the
    eval (20%-90% of the run) over the loop's episodes/s.
(b) The engines. SmolLM2-135M-Instruct on this machine's CPU, GSM8K test questions (the NAT eval prompt,
    zero-shot-target-aware's correct hint; greedy; up to 4 turns; real calculator), no Ray: the paper's loop (one
    episode at a time, one plain ``generate`` per call, on the first ``--loop-episodes``: all; quick: 8) against all
    ``--episodes`` (64, the quickstart engine's batch) at once, each engine in a fresh process (as an engine
    actor runs), through each engine: ``openvino`` (the default: OpenVINO GenAI on the project's own export of
    SmolLM2, its CPU defaults), ``openvino_float32`` (f32 arithmetic and KV cache: what an eval runs,
    ``eval.repeatable``), the transformers engine's ``cached`` (its default batching), ``static``, ``continuous``
    (transformers'), ``static`` in float32 (a full run; ``engine_bf16_speedup``), ``cached_mkl`` (float32: torch's
    own linears instead of oneDNN's packed ones) and, with ``--openvino IR_FOLDER``, OpenVINO GenAI on that IR
    (``openvino_ir``, ``openvino_ir_float32``: optimum-intel's export, say). ``engine_speedup``: generated tokens/s of
    the default engine over the paper loop's (a rate: the loop's does not depend on how many episodes it runs).
(c) Multi-turn replay: NATInstruct StrategyQA trajectories replayed turn by turn through the same engines (see
    :func:`replay`); ``replay_speedup`` likewise.
With ``--rounds R`` every engine of (b) and (c) runs R times, the order reversed each round (A B C, C B A, ...;
``benchmarks/engine_rows.py``), and its figures are the means: the machine's drift over a run then lands on every
engine alike instead of on the later rows (use 2 or more for the ratios between engines).

JSON keys: ``speedup_vs_sequential`` (a), ``engine_speedup`` (b), ``replay_speedup`` (c), ``engines`` (each engine
of (b) with its tokens/s), ``default_vs_transformers`` (the default engine's tokens/s over ``cached``'s, the lower of
(b) and (c)), with ``--openvino`` ``default_vs_openvino`` (over the faster ``openvino_ir`` row's, likewise); details
beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine_rows import (
    DEFAULT_ENGINE,
    PAPER_LOOP,
    TRANSFORMERS_DEFAULT,
    calculator_tools,
    conversations,
    engine_names,
    episodes,
    measure_episodes,
    measure_replay,
    run_rows,
    summary,
)
from nat_ray.config import load_config
from nat_ray.episode import EpisodeRunner
from nat_ray.evaluation.driver import run_eval
from nat_ray.evaluation.plan import plan_eval
from nat_ray.policy import build_policy
from nat_ray.ray_init import init_ray
from nat_ray.storage import write_json

REPO = Path(__file__).resolve().parents[1]


def orchestration(args, workdir: Path) -> dict:
    n = 192 if args.quick else 640
    per = n // 2
    overrides = [
        f"out={workdir}/a",
        f"eval.limit={per}",
        f"policy.latency_s={args.latency}",
        "eval.env_workers={min: 2, max: 2}",
        "eval.episodes_per_worker=32",
        "eval.batch_size=4",
        "eval.flush_every=64",
        "tools.calculator.pool={min: 2, max: 2}",
    ]
    cfg = load_config(REPO / "configs/ci_eval_scripted.yaml", overrides)
    plans = plan_eval(cfg, "zero-shot", None)
    seq_n = 8 if args.quick else 48

    async def loop() -> tuple[list, float]:
        tools = calculator_tools()
        runners = {
            p.name: EpisodeRunner(p.settings, build_policy(cfg.policy, p.settings.template), tools) for p in plans
        }
        specs = [s for p in plans for s in p.specs[: seq_n // 2]]
        t0 = time.monotonic()
        trajs = [await runners[s.task].run(s) for s in specs]
        return trajs, time.monotonic() - t0

    trajs, seconds = asyncio.run(loop())
    seq = summary(trajs, seconds)
    print(f"  sequential loop: {seq['episodes']} episodes, {seq['episodes_per_s']:.3f} episodes/s", flush=True)
    metrics = run_eval(cfg, progress=False)
    run = metrics["run"]
    pool = {
        "episodes": run["episodes_run"],
        "in_flight": 64,
        "seconds": run["seconds"],
        "episodes_per_s": run["episodes_per_s"],
        "steady_episodes_per_s": run["steady_episodes_per_s"],
        "ideal_per_s": 64 / (args.latency * seq["calls_per_episode"]),
    }
    print(f"  distributed eval: {pool}", flush=True)
    return {"latency_s": args.latency, "sequential": seq, "eval": pool}


def engine(args) -> dict:
    """GSM8K eval episodes through each engine, each in its own process; the paper's loop runs the first ``loop_n``
    of the same episodes."""
    _, _, loop_n = episodes(args)
    results: dict = {"episodes": args.episodes, "paper_loop_episodes": loop_n, "max_tokens": args.max_tokens,
                     "threads": args.threads, "rounds": args.rounds}  # fmt: skip
    names = engine_names(args, full_only=("static_float32",))
    results["engines"], replies = run_rows(names, args.rounds, measure_episodes, args)
    _ratios(results, replies)
    return results


def _ratios(results: dict, replies: dict[str, list]) -> None:
    """Each engine's tokens/s over the paper loop's, and how many episodes it ran exactly as the loop did."""
    by = {r["name"]: r for r in results["engines"]}
    loop = by[PAPER_LOOP]
    for r in results["engines"]:
        r["x_paper_loop"] = r["tokens_per_s"] / loop["tokens_per_s"]
        shared = list(zip(replies[PAPER_LOOP], replies[r["name"]], strict=False))
        r["same_as_paper_loop"] = sum(a == b for a, b in shared) / len(shared)
    results["default"] = DEFAULT_ENGINE
    results["speedup"] = by[DEFAULT_ENGINE]["x_paper_loop"]
    peers = [by[n]["tokens_per_s"] for n in ("openvino_ir", "openvino_ir_float32") if n in by]
    if peers:  # the default engine's tokens/s over the faster row of the IR --openvino names
        results["vs_openvino"] = by[DEFAULT_ENGINE]["tokens_per_s"] / max(peers)
    if TRANSFORMERS_DEFAULT in by:  # over the transformers engine (the default before OpenVINO)
        results["vs_transformers"] = by[DEFAULT_ENGINE]["tokens_per_s"] / by[TRANSFORMERS_DEFAULT]["tokens_per_s"]
    if "static_float32" in by:
        results["bf16_speedup"] = by["static"]["tokens_per_s"] / by["static_float32"]["tokens_per_s"]


def replay(args) -> dict:
    """Multi-turn conversations: the NATInstruct StrategyQA trajectories (GPT-3.5 ReAct episodes with search
    observations) replayed turn by turn; at each turn the engine replies (greedy) to the recorded history, and the
    next turn's prompt is that history plus the recorded reply and observation. Conversations run concurrently,
    the turns of one in order: the workload where keeping a conversation's KV cache between turns pays."""
    n = len(conversations(args))
    loop_n = min(n, 2 if args.quick else 8)
    results: dict = {"conversations": n, "paper_loop_conversations": loop_n, "max_tokens": args.replay_tokens,
                     "rounds": args.rounds}  # fmt: skip
    results["engines"], replies = run_rows(engine_names(args), args.rounds, measure_replay, args, loop_n)
    _ratios(results, replies)
    return results


def _table(title: str, part: dict, unit: str) -> None:
    print(f"\n{title}")
    print(f"{'engine':<21}{'dtype':<20}{unit:>10}{'tokens/s':>10}{'x loop':>8}{'same':>7}")
    for r in part["engines"]:
        count = r.get("episodes", r.get("replies"))
        print(f"{r['name']:<21}{r['dtype']:<20}{count:>10}{r['tokens_per_s']:>10.1f}{r['x_paper_loop']:>8.2f}"
              f"{r['same_as_paper_loop']:>7.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--latency", type=float, default=0.5, help="scripted reply latency L, seconds")
    parser.add_argument("--max-tokens", type=int, default=None, help="(b) tokens per reply at most (128; quick 96)")
    parser.add_argument("--replay-tokens", type=int, default=64, help="(c) tokens per reply at most")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the engines")
    parser.add_argument("--no-engine", action="store_true", help="skip parts (b) and (c), the SmolLM2 engines")
    parser.add_argument(
        "--openvino", default=None, help="an OpenVINO IR export of SmolLM2 made elsewhere: adds its rows"
    )
    parser.add_argument("--engines", default=None, help="comma-separated subset of the engines to run")
    parser.add_argument("--rounds", type=int, default=1, help="(b), (c): runs of each engine, in alternating order")
    parser.add_argument("--episodes", type=int, default=64, help="(b) GSM8K episodes, all in flight (quickstart: 64)")
    parser.add_argument("--loop-episodes", type=int, default=None, help="(b) through the paper loop (all; quick 8)")
    parser.add_argument("--conversations", type=int, default=None, help="(c) conversations (32; quick 16)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: 1 or more")
    if args.max_tokens is None:
        args.max_tokens = 96 if args.quick else 128

    import ray

    b = c = None
    if not args.no_engine:  # first, alone on the machine: no Ray processes competing for the 2 cores
        print("(b) SmolLM2-135M engines on this CPU, GSM8K eval episodes", flush=True)
        b = engine(args)
        print("(c) SmolLM2-135M engines, multi-turn replay of StrategyQA trajectories", flush=True)
        c = replay(args)
    init_ray()  # embedded, as the stage drivers start it (a start that times out on a busy machine is retried)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"(a) orchestration, scripted policy with reply latency L = {args.latency}s", flush=True)
        a = orchestration(args, Path(tmp))
    ray.shutdown()

    seq, pool = a["sequential"], a["eval"]
    speedup = (pool["steady_episodes_per_s"] or pool["episodes_per_s"]) / seq["episodes_per_s"]
    print(f"\n(a) episodes/s: sequential {seq['episodes_per_s']:.3f}, distributed eval (64 in flight) steady "
          f"{pool['steady_episodes_per_s'] or float('nan'):.2f}, whole run {pool['episodes_per_s']:.2f}, "
          f"ideal {pool['ideal_per_s']:.1f}")  # fmt: skip
    result: dict = {"speedup_vs_sequential": speedup, "quick": args.quick, "orchestration": a, "engine": b, "replay": c}
    if b and c:
        _table(f"(b) {b['episodes']} GSM8K episodes (paper loop: first {b['paper_loop_episodes']})", b, "episodes")
        _table(f"(c) {c['conversations']} StrategyQA conversations replayed turn by turn", c, "replies")
        result["engines"] = [{k: r[k] for k in ("name", "dtype", "tokens_per_s")} for r in b["engines"]]
        result["engine_speedup"] = b["speedup"]
        result["replay_speedup"] = c["speedup"]
        print(f"engine_speedup = {b['speedup']:.2f}x (the default engine, {b['default']}, vs the paper's "
              f"loop); multi-turn replay {c['speedup']:.2f}x")  # fmt: skip
        if "vs_transformers" in b and "vs_transformers" in c:
            result["default_vs_transformers"] = min(b["vs_transformers"], c["vs_transformers"])
            vs = (b["vs_transformers"], c["vs_transformers"])
            print(f"default_vs_transformers = {result['default_vs_transformers']:.2f}x (over the transformers engine, "
                  f"{TRANSFORMERS_DEFAULT}: (b) {vs[0]:.2f}x, (c) {vs[1]:.2f}x)")  # fmt: skip
        if "vs_openvino" in b and "vs_openvino" in c:  # the lower of the two workloads' ratios
            result["default_vs_openvino"] = min(b["vs_openvino"], c["vs_openvino"])
            print(f"default_vs_openvino = {result['default_vs_openvino']:.2f}x (the default engine's tokens/s over "
                  f"OpenVINO GenAI's: (b) {b['vs_openvino']:.2f}x, (c) {c['vs_openvino']:.2f}x)")  # fmt: skip
        if "bf16_speedup" in b:
            result["engine_bf16_speedup"] = b["bf16_speedup"]
            print(f"engine_bf16_speedup = {b['bf16_speedup']:.2f}x (static batching, bfloat16 vs float32 tokens/s)")
    print(f"speedup_vs_sequential = {speedup:.1f}x")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
