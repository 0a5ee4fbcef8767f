"""The engine rows that ``benchmarks/eval.py``, ``decode_step.py`` and their tests share: which engines there are,
how one is built, and how one row of workload (b) (GSM8K eval episodes) or (c) (multi-turn replay) is measured, each
in a fresh process, over one or more rounds."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from nat_ray.config import PolicyConfig
from nat_ray.episode import EpisodeRunner, EpisodeSettings, EpisodeSpec
from nat_ray.policy.engine_client import LocalEnginePolicy
from nat_ray.prompts import get_template
from nat_ray.tasks import get_task, load_questions_file, prompts_file, resolve_data_dir, task_file
from nat_ray.tools.calculator import Calculator

# the shipped configs' engine (policy.kind openvino: OpenVINO GenAI on the project's own export of SmolLM2)
DEFAULT_ENGINE = "openvino"
# OpenVINO GenAI's rows: (IR, policy.dtype). "export": the project's export (nat_ray.policy.openvino_export), "ir": the
# IR folder --openvino names (optimum-intel's export, say). auto: its CPU defaults; float32: f32 arithmetic and KV cache
OPENVINO_ROWS = {
    "openvino": ("export", "auto"),
    "openvino_float32": ("export", "float32"),
    "openvino_ir": ("ir", "auto"),
    "openvino_ir_float32": ("ir", "float32"),
}
TRANSFORMERS_DEFAULT = PolicyConfig.model_fields["batching"].default  # the transformers engine's batching: cached
PAPER_LOOP = "paper_loop"


def calculator_tools() -> dict:
    calc = Calculator()

    async def calculate(arg: str) -> str:
        return await asyncio.to_thread(calc, arg)

    return {"calculate": calculate}


def summary(trajs: list, seconds: float) -> dict:
    return {
        "episodes": len(trajs),
        "seconds": seconds,
        "episodes_per_s": len(trajs) / seconds,
        "tokens_per_s": sum(t.completion_tokens for t in trajs) / seconds,
        "calls_per_episode": statistics.mean(t.num_turns + t.action_errors for t in trajs),
        "accuracy": sum(bool(t.reward) for t in trajs) / len(trajs),
    }


class PlainGenerate:
    """The paper's loop: one conversation per ``model.generate`` call."""

    def __init__(self, eng) -> None:
        self.eng = eng

    async def generate(self, messages, params):
        return self.eng.generate_batch([messages], params)[0]

    def close(self) -> None:
        pass


def make_engine(name: str, batch: int, args):
    """(engine, dtype label) for one row of the comparison."""
    from nat_ray.models import resolve_model_path
    from nat_ray.policy.hf_engine import HFEngine

    if name in OPENVINO_ROWS:
        from nat_ray.policy.openvino_engine import OVEngine
        from nat_ray.policy.openvino_export import openvino_model_dir

        source, dtype = OPENVINO_ROWS[name]
        model = getattr(args, "model", None) or "smollm2"  # a checkpoint of nat-ray train: exported once
        ir = openvino_model_dir(model) if source == "export" else args.openvino
        ov = OVEngine(ir, max_batch_size=batch, num_threads=args.threads, dtype=dtype)
        return ov, f"openvino {dtype}"
    batching, dtype = {
        PAPER_LOOP: ("static", "auto"),
        "static_float32": ("static", "float32"),
        "cached_mkl": ("cached", "auto"),
    }.get(name, (name, "auto"))
    eng = HFEngine(resolve_model_path("smollm2"), max_batch_size=batch, num_threads=args.threads, batching=batching,
                   dtype=dtype, pack=name != "cached_mkl")  # fmt: skip
    label = eng.precision().split(" ")[0]
    return (PlainGenerate(eng) if name == PAPER_LOOP else eng), label


def engine_names(args, full_only: tuple[str, ...] = ()) -> list[str]:
    # cached: the transformers engine's default batching; cached_mkl: it with torch's own float32 linears (MKL)
    # instead of oneDNN's packed ones
    names = [PAPER_LOOP, "openvino", "openvino_float32", "cached", "cached_mkl", "static", "continuous"]
    if not args.quick:
        names += list(full_only)
    if args.openvino:
        names += ["openvino_ir", "openvino_ir_float32"]
    if args.engines:  # a subset (the paper loop and the default always run: they make the headline ratio)
        names = [n for n in names if n in {PAPER_LOOP, DEFAULT_ENGINE, *args.engines.split(",")}]
    return names


def isolated(fn, *args):
    """One engine's measurement in a fresh process, as an engine actor runs it. Torch work run earlier by a
    process's main thread (the paper loop's ``generate``) halves the speed of a later engine thread on these 2 cores
    (its OpenMP team stays), so engines measured one after another in one process are not measured fairly."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def schedule(names: list[str], rounds: int) -> list[str]:
    """The order rows run in: every name once in round 1, then every engine again per round, the order reversed
    each time (A B C, C B A, A B C, ...), so a machine that speeds up or slows down steadily over the run moves every
    engine's mean alike. The paper loop runs in round 1 only: it is the slow reference of ``x_paper_loop`` (minutes
    per run), not a side of the ratios between engines."""
    order = list(names)
    again = [n for n in names if n != PAPER_LOOP]
    for r in range(1, rounds):
        order += again[::-1] if r % 2 else again
    return order


def run_rows(names: list[str], rounds: int, measure: Callable, *extra) -> tuple[list[dict], dict[str, list]]:
    """Each row of ``names`` measured by ``measure(name, *extra)`` in a fresh process, in :func:`schedule`'s order;
    a row run more than once reports the mean seconds and rates over its runs (and each run's tokens/s in
    ``rounds_tokens_per_s``); the replies are its first run's."""
    runs: dict[str, list[dict]] = {n: [] for n in names}
    replies: dict[str, list] = {}
    for name in schedule(names, rounds):
        row, got = isolated(measure, name, *extra)
        runs[name].append(row)
        replies.setdefault(name, got)
        print(f"  {name:<20} {row}", flush=True)
    rows = []
    for name in names:
        row = dict(runs[name][0])
        if len(runs[name]) > 1:
            for key in ("seconds", "episodes_per_s", "tokens_per_s"):
                if key in row:
                    row[key] = statistics.mean(r[key] for r in runs[name])
            row["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in runs[name]]
        rows.append(row)
    return rows, replies


def episodes(args) -> tuple[EpisodeSettings, list[EpisodeSpec], int]:
    n = args.episodes
    loop_n = min(n, args.loop_episodes or (8 if args.quick else n))  # a rate: it does not depend on the count
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
    return settings, [EpisodeSpec(task.name, q.id, q.question, q.ground_truth, 0.0, 0) for q in questions], loop_n


def measure_episodes(name: str, args) -> tuple[dict, list]:
    """Workload (b): every episode in flight at once through one engine (the paper loop: one at a time)."""
    settings, specs, loop_n = episodes(args)
    eng, dtype = make_engine(name, len(specs), args)
    runner = EpisodeRunner(settings, LocalEnginePolicy(eng, "smollm2"), calculator_tools())

    async def run() -> list:
        if name == PAPER_LOOP:
            return [await runner.run(s) for s in specs[:loop_n]]
        return list(await asyncio.gather(*(runner.run(s) for s in specs)))

    t0 = time.monotonic()
    trajs = asyncio.run(run())
    row = {"name": name, "dtype": dtype} | summary(trajs, time.monotonic() - t0)
    if hasattr(eng, "cache_stats"):
        row["cache"] = eng.cache_stats()
    eng.close()
    return row, [[t.content for t in tr.turns] for tr in trajs]


def conversations(args) -> list[tuple[list[dict], list[dict]]]:
    """NATInstruct StrategyQA GPT-3.5 trajectories of 4+ messages: (the eval prompt's head, the recorded turns)."""
    n = args.conversations or (16 if args.quick else 32)
    task = get_task("strategyqa")
    data = resolve_data_dir(args.data_dir)
    template = get_template(prompts_file(task, data), "zero-shot-target-aware")
    questions = {q.id: q for q in load_questions_file(task, task_file(task, "train", data))}
    records = json.loads((data / "nat/dataset/strategyqa/strategyqa_gpt-3.5_positive.json").read_text())
    convs = []
    for rec in records:
        if rec["id"] in questions and len(rec["conversations"]) >= 4:
            head = [dict(m) for m in template.inference_messages(questions[rec["id"]].question)]
            convs.append((head, [{"role": c["role"], "content": c["content"]} for c in rec["conversations"]]))
        if len(convs) == n:
            break
    return convs


def measure_replay(name: str, args, loop_n: int) -> tuple[dict, list]:
    """Workload (c): the conversations replayed turn by turn, all at once (the paper loop: the first ``loop_n``, one
    at a time)."""
    from nat_ray.policy.base import SamplingParams

    convs = conversations(args)
    params = SamplingParams(temperature=0.0, max_tokens=args.replay_tokens)
    eng, dtype = make_engine(name, len(convs), args)

    async def one(head, turns) -> tuple[list[str], int]:
        out, tokens = [], 0
        for k, msg in enumerate(turns):
            if msg["role"] != "assistant":
                continue
            c = await eng.generate(head + turns[:k], params)
            out.append(c.text)
            tokens += c.completion_tokens
        return out, tokens

    async def run():
        if name == PAPER_LOOP:
            return [await one(h, t) for h, t in convs[:loop_n]]
        return await asyncio.gather(*(one(h, t) for h, t in convs))

    t0 = time.monotonic()
    done = asyncio.run(run())
    seconds = time.monotonic() - t0
    row = {"name": name, "dtype": dtype, "replies": sum(len(o) for o, _ in done), "seconds": seconds,
           "tokens_per_s": sum(t for _, t in done) / seconds}  # fmt: skip
    if hasattr(eng, "cache_stats"):
        row["cache"] = eng.cache_stats()
    eng.close()
    return row, [o for o, _ in done]
