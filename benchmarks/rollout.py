"""Rollout orchestration and a real server, each side by side with a sequential loop like the paper's.

    python benchmarks/rollout.py [--quick] [--json PATH] [--latency 0.5] [--no-serve]

(a) Orchestration efficiency. A policy with a fixed reply latency L replays the recorded assistant turns of the
    shipped StrategyQA GPT-3.5 trajectories (the search tool replays the recorded observations). With N episodes in
    flight, the ideal throughput is N / (L x calls per episode) episodes/s, i.e. N / L policy calls/s. Efficiency is
    the pool's steady policy-call rate (between 20% and 90% of all calls; this leaves out actor start-up, the first
    wave and the tail) over N / L, for N = 1 ... 256, over 12-20 waves of episodes each. Speed-up: steady episodes/s
    against the paper's loop (one episode at a time, same policy and tool).
(b) A real server. `transformers serve` with SmolLM2-135M-Instruct on 127.0.0.1 (CPU, continuous batching): GSM8K
    episodes/s and generated tokens/s of the env-worker pool vs the sequential loop, against the same server.

JSON keys: ``efficiency_at_64`` (a, N=64), ``speedup_vs_sequential`` (a, N=64 vs the loop); details beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine_rows import summary
from nat_ray.config import load_config
from nat_ray.episode import EpisodeRunner
from nat_ray.nat_import import ImportConfig, import_nat
from nat_ray.policy import build_policy
from nat_ray.ray_init import init_ray
from nat_ray.rollout.driver import run_rollout
from nat_ray.rollout.plan import episode_settings, plan_episodes
from nat_ray.storage import read_trajectories, write_json
from nat_ray.tasks import resolve_data_dir
from nat_ray.tools.calculator import Calculator
from nat_ray.tools.replay import ReplaySearch


def sequential(cfg, n: int) -> dict:
    """The paper's loop: one episode after another, same policy and tools, no Ray."""
    settings = episode_settings(cfg)
    task = settings.task
    specs = plan_episodes(cfg)[:n]

    async def run() -> dict:
        policy = build_policy(cfg.policy, settings.template)
        if task.tool == "search":
            tools = {"search": ReplaySearch(cfg.tools.search.replay_from)}
        else:
            calc = Calculator(timeout_s=cfg.tools.calculator.timeout_s)

            async def calculate(arg: str) -> str:
                return calc(arg)

            tools = {"calculate": calculate}
        runner = EpisodeRunner(settings, policy, tools)
        t0 = time.monotonic()
        trajs = [await runner.run(s) for s in specs]
        return summary(trajs, time.monotonic() - t0)

    return asyncio.run(run())


def orchestration(args, workdir: Path, data: Path) -> dict:
    sq = data / "nat/dataset/strategyqa"
    replay = workdir / "strategyqa"
    import_nat(
        ImportConfig(
            task="strategyqa",
            questions=str(sq / "train.jsonl"),
            out=str(replay),
            files=[str(sq / "strategyqa_gpt-3.5_positive.json"), str(sq / "strategyqa_gpt-3.5_negative.json")],
        ),
        overwrite=True,
    )
    base = [
        f"rollout.questions={sq / 'train.jsonl'}",
        "rollout.template=zero-shot",
        f"policy={{kind: scripted, script: replay, replay_from: '{replay}', latency_s: {args.latency}}}",
        f"tools.search={{kind: replay, replay_from: '{replay}'}}",
        "rollout.flush_every=100000",
    ]
    config = Path(__file__).resolve().parents[1] / "configs/ci_rollout_gsm8k_scripted.yaml"
    rows = []
    seq_cfg = load_config(config, [*base, "rollout.task=strategyqa", "rollout.temperatures=[0.7]", f"out={workdir}/s"])
    seq = sequential(seq_cfg, 8 if args.quick else 24)
    for n in [1, 16, 64] if args.quick else [1, 4, 16, 64, 256]:
        waves = (8 if n > 1 else 24) if args.quick else (12 if n > 64 else 20 if n > 1 else 48)
        episodes = waves * n
        workers = math.ceil(n / 64)
        cfg = load_config(
            config,
            [
                *base,
                "rollout.task=strategyqa",
                f"out={workdir}/n{n}",
                f"rollout.limit={math.ceil(episodes / 3 / (2 if episodes > 3000 else 1))}",
                f"rollout.samples={2 if episodes > 3000 else 1}",
                f"rollout.env_workers={{min: {workers}, max: {workers}}}",
                f"rollout.episodes_per_worker={n // workers}",
                f"rollout.batch_size={max(1, min(16, n // workers // 4))}",
            ],
        )
        meta = run_rollout(cfg, progress=False)
        trajs = read_trajectories(cfg.trajectories_dir())
        calls = statistics.mean(t.num_turns + t.action_errors for t in trajs)
        ideal = n / (args.latency * calls)
        steady = meta["run"]["steady_episodes_per_s"]
        rows.append(
            {
                "n": n,
                "episodes": len(trajs),
                "calls_per_episode": calls,
                "ideal_per_s": ideal,
                "steady_per_s": steady,
                "efficiency": meta["run"]["steady_policy_calls_per_s"] * args.latency / n,
                "vs_sequential": steady / seq["episodes_per_s"],
                "wall_s": meta["run"]["seconds"],
            }
        )
        print(f"  N={n:<4} {rows[-1]}", flush=True)
    return {"latency_s": args.latency, "sequential": seq, "pool": rows}


def real_server(args, workdir: Path) -> dict:
    from nat_ray.models import prepare
    from nat_ray.policy.serve import transformers_serve

    with transformers_serve(prepare("smollm2")) as base_url:
        n = 6 if args.quick else 16
        overrides = [
            f"out={workdir}/serve",
            f"policy={{kind: openai, base_url: '{base_url}', model: auto, max_tokens: 48}}",
            "rollout.split=test",
            f"rollout.limit={n}",
            "rollout.temperatures=[0.7]",
            "rollout.max_turns=3",
            "rollout.env_workers={min: 1, max: 1}",
            f"rollout.episodes_per_worker={n}",
            "rollout.batch_size=1",
        ]
        cfg = load_config(Path(__file__).resolve().parents[1] / "configs/rollout_gsm8k_smollm2.yaml", overrides)
        seq = sequential(cfg, n)
        meta = run_rollout(cfg, progress=False)
        trajs = read_trajectories(cfg.trajectories_dir())
        seconds = meta["run"]["seconds"]
        pool = {
            "episodes": len(trajs),
            "seconds": seconds,
            "episodes_per_s": len(trajs) / seconds,
            "tokens_per_s": sum(t.completion_tokens for t in trajs) / seconds,
        }
        return {
            "episodes": n,
            "sequential": seq,
            "pool": pool,
            "episodes_ratio": pool["episodes_per_s"] / seq["episodes_per_s"],
            "tokens_ratio": pool["tokens_per_s"] / seq["tokens_per_s"] if seq["tokens_per_s"] else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--latency", type=float, default=0.5, help="scripted reply latency L, seconds")
    parser.add_argument("--no-serve", action="store_true", help="skip part (b), the real server")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    init_ray()  # embedded, as the stage drivers start it (a start that times out on a busy machine is retried)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print(f"(a) orchestration, replayed StrategyQA episodes, reply latency L = {args.latency}s")
        a = orchestration(args, workdir, resolve_data_dir(args.data_dir))
        b = None if args.no_serve else real_server(args, workdir)

    seq = a["sequential"]
    print(
        f"\n(a) sequential loop: {seq['episodes_per_s']:.3f} episodes/s ({seq['calls_per_episode']:.2f} calls/episode)"
    )
    print(f"{'N':>5}{'episodes':>10}{'ideal/s':>10}{'steady/s':>10}{'efficiency':>12}{'x sequential':>14}")
    for r in a["pool"]:
        print(
            f"{r['n']:>5}{r['episodes']:>10}{r['ideal_per_s']:>10.2f}{r['steady_per_s']:>10.2f}"
            f"{r['efficiency']:>12.1%}{r['vs_sequential']:>14.1f}"
        )
    at64 = next(r for r in a["pool"] if r["n"] == 64)
    result = {
        "efficiency_at_64": at64["efficiency"],
        "speedup_vs_sequential": at64["vs_sequential"],
        "quick": args.quick,
        "orchestration": a,
        "real_server": b,
    }
    if b:
        s, p = b["sequential"], b["pool"]
        print(f"\n(b) transformers serve + SmolLM2-135M (CPU), {b['episodes']} GSM8K episodes")
        print(f"{'':<12}{'episodes/s':>12}{'tokens/s':>10}")
        print(f"{'sequential':<12}{s['episodes_per_s']:>12.3f}{s['tokens_per_s']:>10.1f}")
        print(f"{'actor pool':<12}{p['episodes_per_s']:>12.3f}{p['tokens_per_s']:>10.1f}")
        print(f"ratio: episodes {b['episodes_ratio']:.2f}x, tokens {b['tokens_ratio'] or 0:.2f}x")
    eff, speedup = result["efficiency_at_64"], result["speedup_vs_sequential"]
    print(f"\nefficiency_at_64 = {eff:.1%}   speedup_vs_sequential = {speedup:.1f}x")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
