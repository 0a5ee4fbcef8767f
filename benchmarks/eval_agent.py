"""The cached engine on an agent's own eval: a fine-tuned math checkpoint, multi-turn ReAct with the calculator.

    python benchmarks/eval_agent.py CHECKPOINT [--task svamp] [--episodes 320] [--in-flight 64] [--dtype auto]
                                    [--json PATH]

``benchmarks/eval.py``'s (b) runs the base model, which answers in one malformed reply, and (c) replays GPT-3.5's
StrategyQA turns; neither is what an eval of a fine-tuned math model asks of the engine: short replies (~28 tokens),
a calculator observation between them, 3-4 turns an episode, an episode's first turn prefilling its question and
each later one only the observation. Here ``--episodes`` test questions run through the engine with ``--in-flight``
of them at a time (as one env worker holds them, so the batch stays full until the last ones), greedy, up to 6
turns of 128 tokens; no Ray. Reported: episodes/s, generated tokens/s, the time in prefill (admits) and in decode
steps, the rows a step decoded on average, the prompt tokens served from kept caches, and the accuracy (a check that
the model is the one meant).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nat_ray.episode import EpisodeRunner, EpisodeSettings, EpisodeSpec
from nat_ray.policy.engine_client import LocalEnginePolicy
from nat_ray.policy.hf_engine import HFEngine
from nat_ray.prompts import get_template
from nat_ray.tasks import get_task, load_questions_file, prompts_file, resolve_data_dir, task_file
from nat_ray.tools.calculator import Calculator


def _timed(cls: type, name: str, into: dict) -> None:
    """Add the wall time of ``cls.name`` calls (run on the engine's thread) to ``into[name]``."""
    original = getattr(cls, name)

    def wrapper(self, *args):  # type: ignore[no-untyped-def]
        if name == "_step":
            into["rows"] += len(self._active)
        t = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            into[name] += time.perf_counter() - t

    setattr(cls, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--task", default="svamp")
    parser.add_argument("--episodes", type=int, default=320)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--template", default="zero-shot")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from nat_ray.policy import kv_engine

    spent = {"_admit": 0.0, "_step": 0.0, "rows": 0}
    _timed(kv_engine.KVBatcher, "_admit", spent)
    _timed(kv_engine.KVBatcher, "_step", spent)
    task = get_task(args.task)
    data = resolve_data_dir(args.data_dir)
    questions = load_questions_file(task, task_file(task, "test", data))[: args.episodes]
    settings = EpisodeSettings(task=task, template=get_template(prompts_file(task, data), args.template),
                               source="benchmark", max_turns=6, max_tokens=128, max_attempts=1)  # fmt: skip
    engine = HFEngine(
        args.checkpoint, max_batch_size=args.in_flight, num_threads=2, batching="cached", dtype=args.dtype
    )
    calc = Calculator()

    async def calculate(arg: str) -> str:
        return await asyncio.to_thread(calc, arg)

    runner = EpisodeRunner(settings, LocalEnginePolicy(engine, "checkpoint"), {"calculate": calculate})
    specs = [EpisodeSpec(task.name, q.id, q.question, q.ground_truth, 0.0, 0) for q in questions]

    async def run() -> list:
        slots = asyncio.Semaphore(args.in_flight)

        async def one(spec: EpisodeSpec):  # type: ignore[no-untyped-def]
            async with slots:
                return await runner.run(spec)

        return list(await asyncio.gather(*(one(s) for s in specs)))

    t0 = time.monotonic()
    trajectories = asyncio.run(run())
    seconds = time.monotonic() - t0
    stats = engine.cache_stats()
    engine.close()
    tokens = sum(t.completion_tokens for t in trajectories)
    out = {
        "checkpoint": args.checkpoint,
        "task": args.task,
        "episodes": len(trajectories),
        "in_flight": args.in_flight,
        "precision": engine.precision(),
        "seconds": round(seconds, 1),
        "episodes_per_s": round(len(trajectories) / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "accuracy": sum(bool(t.reward) for t in trajectories) / len(trajectories),
        "prefill_s": round(spent["_admit"], 1),
        "decode_s": round(spent["_step"], 1),
        "mean_rows_per_step": round(spent["rows"] / max(stats["steps"], 1), 1),
        **stats,
    }
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
