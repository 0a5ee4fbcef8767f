"""Evaluation throughput, each side by side with the paper's loop (one episode at a time).

    python benchmarks/eval.py [--quick] [--json PATH] [--latency 0.5] [--no-engine]

(a) Orchestration. The scripted ``arithmetic`` policy with a fixed reply latency L and the real calculator: the
    distributed eval (`run_eval`: env-worker actors, calculator pool, 64 episodes in flight) against a sequential loop
    like the paper's over the same GSM8K + SVAMP test questions. ``speedup_vs_sequential``: steady episodes/s of the
    eval (20%-90% of the run) over the loop's episodes/s.
(b) The engine. SmolLM2-135M-Instruct on this machine's CPU, the same GSM8K test questions (the NAT eval prompt,
    zero-shot-target-aware's correct hint; greedy; up to 4 turns; real calculator), no Ray: the paper's loop (one
    episode at a time, one plain `generate` per call) against all episodes in flight through the transformers
    engine with static batching and with transformers' continuous batching, all in the dtype ``policy.dtype: auto``
    picks (bfloat16 on a CPU with AMX / AVX512-BF16); where that is bfloat16, a full run also measures static
    batching in float32 (``engine_bf16_speedup``, tokens/s). ``engine_speedup``: generated tokens/s
    of the faster engine over the paper's loop (greedy decoding makes the three runs do the same episodes, so
    episodes/s is reported beside it).

JSON keys: ``speedup_vs_sequential`` (a), ``engine_speedup`` (b); details beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nat_ray.config import load_config
from nat_ray.episode import EpisodeRunner, EpisodeSettings, EpisodeSpec
from nat_ray.evaluation.driver import run_eval
from nat_ray.evaluation.plan import plan_eval
from nat_ray.policy import build_policy
from nat_ray.prompts import get_template
from nat_ray.storage import write_json
from nat_ray.tasks import get_task, load_questions_file, prompts_file, resolve_data_dir, task_file
from nat_ray.tools.calculator import Calculator

REPO = Path(__file__).resolve().parents[1]


def _calculator() -> dict:
    calc = Calculator()

    async def calculate(arg: str) -> str:
        return await asyncio.to_thread(calc, arg)

    return {"calculate": calculate}


def _summary(trajs: list, seconds: float) -> dict:
    return {
        "episodes": len(trajs),
        "seconds": seconds,
        "episodes_per_s": len(trajs) / seconds,
        "tokens_per_s": sum(t.completion_tokens for t in trajs) / seconds,
        "calls_per_episode": statistics.mean(t.num_turns + t.action_errors for t in trajs),
        "accuracy": sum(bool(t.reward) for t in trajs) / len(trajs),
    }


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
    seq_n = 16 if args.quick else 48

    async def loop() -> tuple[list, float]:
        tools = _calculator()
        runners = {
            p.name: EpisodeRunner(p.settings, build_policy(cfg.policy, p.settings.template), tools) for p in plans
        }
        specs = [s for p in plans for s in p.specs[: seq_n // 2]]
        t0 = time.monotonic()
        trajs = [await runners[s.task].run(s) for s in specs]
        return trajs, time.monotonic() - t0

    trajs, seconds = asyncio.run(loop())
    seq = _summary(trajs, seconds)
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
    from nat_ray.models import resolve_model_path
    from nat_ray.policy.engine_client import LocalEnginePolicy
    from nat_ray.policy.hf_engine import HFEngine

    n = 8 if args.quick else 24
    task = get_task("gsm8k")
    data = resolve_data_dir(args.data_dir)
    questions = load_questions_file(task, task_file(task, "test", data))[:n]
    settings = EpisodeSettings(
        task=task,
        template=get_template(prompts_file(task, data), "zero-shot-target-aware"),
        source="benchmark",
        max_turns=4,
        max_tokens=args.max_tokens,
        max_attempts=1,
    )
    specs = [EpisodeSpec(task.name, q.id, q.question, q.ground_truth, 0.0, 0) for q in questions]
    model = str(resolve_model_path("smollm2"))
    results: dict = {"episodes": n, "max_tokens": args.max_tokens, "threads": args.threads}

    class PlainGenerate:
        """The paper's loop: one conversation per model.generate call."""

        def __init__(self, eng: HFEngine) -> None:
            self.eng = eng

        async def generate(self, messages, params):
            return self.eng.generate_batch([messages], params)[0]

    async def run(policy, concurrent: bool) -> tuple[list, float]:
        runner = EpisodeRunner(settings, policy, _calculator())
        t0 = time.monotonic()
        if concurrent:
            trajs = await asyncio.gather(*(runner.run(s) for s in specs))
        else:
            trajs = [await runner.run(s) for s in specs]
        return list(trajs), time.monotonic() - t0

    from nat_ray.hardware import resolve_bf16

    chosen = resolve_bf16("auto", "policy.dtype", cuda=False)
    results["dtype"] = f"{chosen.name} ({chosen.reason})"
    runs = [
        ("paper_loop", "static", False, "auto"),
        ("static", "static", True, "auto"),
        ("continuous", "continuous", True, "auto"),
    ]
    if chosen.bf16 and not args.quick:  # what policy.dtype: auto gained over float32, same engine, same episodes
        runs.append(("static_float32", "static", True, "float32"))
    for name, batching, concurrent, dtype in runs:
        eng = HFEngine(model, max_batch_size=n, num_threads=args.threads, batching=batching, dtype=dtype)
        wrapped = PlainGenerate(eng) if name == "paper_loop" else eng
        trajs, seconds = asyncio.run(run(LocalEnginePolicy(wrapped, model), concurrent))
        eng.close()
        results[name] = _summary(trajs, seconds)
        print(f"  {name:<11} {results[name]}", flush=True)
    loop = results["paper_loop"]
    best = max(("static", "continuous"), key=lambda k: results[k]["tokens_per_s"])
    results |= {
        "best": best,
        "static_tokens_ratio": results["static"]["tokens_per_s"] / loop["tokens_per_s"],
        "continuous_tokens_ratio": results["continuous"]["tokens_per_s"] / loop["tokens_per_s"],
        "static_episodes_ratio": results["static"]["episodes_per_s"] / loop["episodes_per_s"],
        "continuous_episodes_ratio": results["continuous"]["episodes_per_s"] / loop["episodes_per_s"],
        "continuous_vs_static": results["continuous"]["tokens_per_s"] / results["static"]["tokens_per_s"],
    }
    if "static_float32" in results:
        results["bf16_speedup"] = results["static"]["tokens_per_s"] / results["static_float32"]["tokens_per_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--latency", type=float, default=0.5, help="scripted reply latency L, seconds")
    parser.add_argument("--max-tokens", type=int, default=None, help="(b) tokens per reply at most (128; quick 96)")
    parser.add_argument("--threads", type=int, default=2, help="(b) torch threads")
    parser.add_argument("--no-engine", action="store_true", help="skip part (b), the SmolLM2 engine")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    if args.max_tokens is None:
        args.max_tokens = 96 if args.quick else 128

    import ray

    b = None
    if not args.no_engine:  # first, alone on the machine: no Ray processes competing for the 2 cores
        print("(b) SmolLM2-135M engine on this CPU: paper loop vs static vs continuous batching", flush=True)
        b = engine(args)
    ray.init(log_to_driver=False, include_dashboard=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"(a) orchestration, scripted policy with reply latency L = {args.latency}s", flush=True)
        a = orchestration(args, Path(tmp))
    ray.shutdown()

    seq, pool = a["sequential"], a["eval"]
    speedup = (pool["steady_episodes_per_s"] or pool["episodes_per_s"]) / seq["episodes_per_s"]
    print(f"\n(a) episodes/s: sequential {seq['episodes_per_s']:.3f}, distributed eval (64 in flight) steady "
          f"{pool['steady_episodes_per_s'] or float('nan'):.2f}, whole run {pool['episodes_per_s']:.2f}, "
          f"ideal {pool['ideal_per_s']:.1f}")  # fmt: skip
    result: dict = {"speedup_vs_sequential": speedup, "quick": args.quick, "orchestration": a, "engine": b}
    if b:
        print(f"\n(b) {b['episodes']} GSM8K episodes, SmolLM2-135M, {args.threads} threads")
        print(f"{'':<12}{'episodes/s':>12}{'tokens/s':>10}{'calls/ep':>10}")
        print(f"engine dtype: {b['dtype']}")
        for k in ("paper_loop", "static", "continuous", "static_float32"):
            if k not in b:
                continue
            r = b[k]
            print(f"{k:<12}{r['episodes_per_s']:>12.3f}{r['tokens_per_s']:>10.1f}{r['calls_per_episode']:>10.2f}")
        result["engine_speedup"] = b[f"{b['best']}_tokens_ratio"]
        print(f"continuous vs static: {b['continuous_vs_static']:.2f}x tokens/s")
        print(f"engine_speedup = {result['engine_speedup']:.2f}x ({b['best']} batching vs the paper's loop)")
        if "bf16_speedup" in b:
            result["engine_bf16_speedup"] = b["bf16_speedup"]
            print(f"engine_bf16_speedup = {b['bf16_speedup']:.2f}x (static batching, bfloat16 vs float32 tokens/s)")
    print(f"speedup_vs_sequential = {speedup:.1f}x")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
