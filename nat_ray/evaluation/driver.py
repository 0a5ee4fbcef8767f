"""The eval driver: a policy on each test set, the paper's metrics, resumable.

    nat-ray eval --config configs/eval_smollm2.yaml policy.model=runs/nat/checkpoint
    nat-ray eval --trajectories runs/strategyqa-gpt35 --out runs/strategyqa-gpt35-eval
    ray job submit --working-dir . -- nat-ray eval --config configs/eval_smollm2.yaml

One actor session for the whole run (a checkpoint is loaded into its engines once), one stream of episodes over all
data sets; each data set's trajectories go to ``<eval.out>/<dataset>/`` with the rollout's exactly-once writer, so a
killed eval started again runs only what is missing. ``<eval.out>/metrics.json`` is written atomically at the end.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from nat_ray.config import RunConfig, dump_config
from nat_ray.engines import reads_dtype
from nat_ray.errors import InputError
from nat_ray.evaluation.metrics import eval_metrics, group_by_task
from nat_ray.evaluation.plan import (
    DatasetPlan,
    checkpoint_training,
    eval_policy,
    identity,
    plan_eval,
    resolve_template,
)
from nat_ray.hardware import machine
from nat_ray.records import METRICS, EvalMetrics
from nat_ray.rollout.driver import check_endpoint, start_ray, validate_search
from nat_ray.rollout.stream import run_episodes, steady_rate
from nat_ray.rollout.writer import TrajectoryWriter
from nat_ray.storage import dataset_manifest, read_record, read_trajectories, write_record


def _policy_info(cfg: RunConfig, training: dict | None) -> dict:
    pc, ec = cfg.policy_section, cfg.eval_section
    info: dict = {"kind": pc.kind, "model": pc.model, "max_tokens": pc.max_tokens}
    if reads_dtype(pc.kind):
        info |= {"dtype": pc.dtype, "repeatable": ec.repeatable}
    info |= {"temperature": ec.temperature, "samples": ec.samples, "max_turns": ec.max_turns}
    if training is not None:
        info["training"] = {k: training.get(k) for k in ("mode", "template")}
    return info


def _validate(cfg: RunConfig) -> tuple[str, str, dict | None, list[DatasetPlan]]:
    if cfg.eval is None or cfg.policy is None:
        raise InputError("an eval needs the 'eval' and 'policy' sections")
    training = checkpoint_training(cfg)  # resolves the model folder of an engine policy: a missing one stops here
    template, why = resolve_template(cfg, training)
    plans = plan_eval(cfg, template, training)
    for plan in plans:
        if plan.settings.task.tool == "search":
            validate_search(cfg.tools.search, plan.name)
    return plans[0].settings.template.name, why, training, plans  # (with eval.hint's suffix where it has one)


def run_eval(cfg: RunConfig, progress: bool = True) -> dict:
    """Run what is missing, then compute and write ``metrics.json``; returns it."""
    cfg = eval_policy(cfg)
    template, why, training, plans = _validate(cfg)
    ec, out = cfg.eval_section, cfg.eval_dir()
    say = print if progress else (lambda *_a, **_k: None)
    say(f"eval: template {template!r} ({why})")
    for plan in plans:
        if plan.note:
            say(f"eval: {plan.note}")
    config = dump_config(cfg)
    writers = {p.name: TrajectoryWriter(out / p.name, config, identity(cfg, p), ec.flush_every) for p in plans}
    todo = [s for p in plans for s in p.specs if s.key not in writers[p.name].done]
    run: dict = {"episodes_run": 0, "resumed_from": sum(w.resumed for w in writers.values())}
    if todo:
        run |= _generate(cfg, plans, writers, todo, progress) | {"machine": machine()}
    else:  # nothing left to run: where the episodes were computed is what the last eval that ran them said
        run |= _computed_in(out / METRICS)
    total = {p.name: len(p.specs) for p in plans}
    for name, w in writers.items():
        w.close(complete=len(w.done) >= total[name])
    by_dataset = {}
    for plan in plans:
        wanted = {s.key for s in plan.specs}  # a larger earlier eval (higher limit) may hold more
        by_dataset[plan.name] = [t for t in read_trajectories(out / plan.name) if t.episode_key in wanted]
    metrics = eval_metrics(by_dataset, _policy_info(cfg, training), template)
    record = EvalMetrics.new(config=config, **metrics, run=run | {"out": str(out)})
    write_record(out / METRICS, record)
    return record.model_dump(mode="json")


def _generate(cfg: RunConfig, plans: list[DatasetPlan], writers: dict, todo: list, progress: bool) -> dict:
    from tqdm import tqdm

    ec, pc = cfg.eval_section, cfg.policy_section
    check_endpoint(pc, plans[0].settings.template)
    start_ray(cfg)

    def add(batch: pa.Table) -> None:
        for task, rows in _split_by_task(batch).items():
            writers[task].add(rows)

    total = sum(len(p.specs) for p in plans)
    bar = tqdm(total=total, initial=total - len(todo), unit="ep", disable=not progress, desc="eval", mininterval=2)
    if progress:
        bar.write(f"eval: {len(todo)} episodes to run over {len(plans)} data set(s); starting the policy and tools")
    try:
        stats, session = run_episodes(cfg, ec, todo, {p.name: p.settings for p in plans}, add, bar)
    finally:
        bar.close()
        for w in writers.values():
            w.flush()
    return {
        "engines_started": session.pop("engines_started"),
        "precision": session.pop("precision"),  # the engines' own account (None for an endpoint: not ours to know)
        "tool_pools": session,
        "episodes_run": len(todo),
        "seconds": round(stats.seconds, 3),
        "episodes_per_s": len(todo) / stats.seconds if stats.seconds > 0 else None,
        "steady_episodes_per_s": steady_rate(stats.episodes_at),
    }


def _computed_in(metrics: Path) -> dict:
    """The precision and machine an earlier ``metrics.json`` recorded for the episodes, if it recorded them."""
    old = read_record(metrics, EvalMetrics) if metrics.exists() else None
    return {k: old.run[k] for k in ("precision", "machine") if old is not None and k in old.run}


def _split_by_task(batch: pa.Table) -> dict[str, pa.Table]:
    tasks = batch.column("task").to_pylist()
    return {t: batch.filter(pa.array([x == t for x in tasks])) for t in dict.fromkeys(tasks)}


def eval_trajectories(path: str | Path, out: str | Path) -> dict:
    """``metrics.json`` of an existing trajectories dataset (one entry per task in it), no generation."""
    trajs = read_trajectories(path)
    meta = dataset_manifest(path)
    config = (meta.config if meta is not None else None) or {}
    template = (config.get("rollout") or {}).get("template") or config.get("template") or "unknown"
    policy = {
        "kind": "trajectories",
        "path": str(path),
        "models": sorted({t.model for t in trajs}),
        "sources": sorted({t.source for t in trajs}),
    }
    record = EvalMetrics.new(**eval_metrics(group_by_task(trajs), policy, template))
    write_record(Path(out) / METRICS, record)
    return record.model_dump(mode="json")
