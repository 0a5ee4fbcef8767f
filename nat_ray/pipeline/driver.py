"""``nat-ray pipeline``: collect -> build each variant -> train each -> eval each (+ base model, + teacher) -> report.

    nat-ray pipeline --config configs/quickstart.yaml
    ray job submit --working-dir . -- nat-ray pipeline --config configs/quickstart.yaml

One run folder (``out``): ``trajectories/``, ``sets/<variant>/``, ``models/<variant>/``, ``eval/<variant>/``,
``report/``; each stage output holds a ``_stage.json`` (:class:`~nat_ray.types.StageManifest`). Each stage runs on a
view of the one config (the same section classes the stage commands read), and is skipped when its view and its
inputs are unchanged (``nat_ray.pipeline.stages``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nat_ray.config import RunConfig, dump_config
from nat_ray.errors import InputError
from nat_ray.pipeline.sections import BuildStageConfig
from nat_ray.pipeline.stages import file_hash, run_stage
from nat_ray.pipeline.variants import Variant, check_counts, expand
from nat_ray.storage import read_trajectories
from nat_ray.tasks import data_file, get_task, prompts_file


def _data_path(cfg: RunConfig, path: str) -> str:
    p = data_file(path, cfg.data_dir)
    if not p.exists():
        raise InputError(f"collect: {path} does not exist (nor under the data folder)")
    return str(p)


def validate(cfg: RunConfig) -> list[Variant]:
    """Everything checkable before any stage runs."""
    missing = [name for name in ("collect", "train", "eval") if getattr(cfg, name) is None]
    if missing:
        raise InputError(f"a pipeline needs the sections: {', '.join(missing)}")
    assert cfg.collect is not None and cfg.train is not None
    task = get_task(cfg.collect.task)
    if cfg.collect.kind == "rollout" and (cfg.rollout is None or cfg.policy is None):
        raise InputError("collect kind 'rollout' needs the 'rollout' and 'policy' sections")
    variants = expand(cfg.build or BuildStageConfig(), cfg.study, cfg.train.seed)
    if any(v.mode == "nat-graded" for v in variants) and task.family != "qa":
        raise InputError(f"study.modes: nat-graded needs a task with F1 (hotpotqa), not {task.name}")
    from nat_ray.prompts import get_template
    from nat_ray.reformat import DEFAULT_TEMPLATE

    for v in variants:
        get_template(prompts_file(task, cfg.data_dir), v.template or DEFAULT_TEMPLATE[v.mode])
    return variants


def run_pipeline(cfg: RunConfig, progress: bool = True) -> dict:
    say: Callable[[str], None] = (lambda m: print(m, flush=True)) if progress else (lambda _m: None)
    variants = validate(cfg)
    assert cfg.collect is not None and cfg.train is not None and cfg.eval is not None
    out = Path(cfg.out)
    say(f"pipeline: {len(variants)} variant(s): {', '.join(v.name for v in variants)}; run folder {out}")
    collected = _collect(cfg, out / "trajectories", say)
    trajs = read_trajectories(out / "trajectories")
    positives = sum(t.label.value == "positive" for t in trajs)
    negatives = sum(t.label.value == "negative" for t in trajs)
    check_counts(variants, positives, negatives, str(out / "trajectories"))
    rows: dict[str, dict] = {}
    task = get_task(cfg.collect.task)
    for v in variants:
        built = _build(cfg, v, out, collected.config_hash, say)
        trained = _train(cfg, v, out, built.config_hash, progress, say)
        evaluated = _eval(cfg, v.name, str(out / "models" / v.name), out, {"train": trained.config_hash}, say)
        rows[v.name] = {"variant": v.__dict__, "eval": evaluated.config_hash}
    if cfg.study is None or cfg.study.base:
        _eval(cfg, "base", cfg.train.model, out, {}, say)
    if (cfg.study is None or cfg.study.teacher) and cfg.collect.kind == "import":
        _teacher(out, collected.config_hash, say)
    from nat_ray.evaluation.report import write_report

    report = run_stage(
        out / "report",
        "report",
        None,
        {"variants": [v.name for v in variants], "task": task.name},
        {name: r["eval"] for name, r in rows.items()},
        lambda: write_report(out, dump_config(cfg), [v.__dict__ for v in variants]),
        say,
    )
    say((out / "report" / "table.md").read_text())
    return {"out": str(out), "variants": [v.name for v in variants], "report": str(out / "report"), **report.counts}


def _collect(cfg: RunConfig, folder: Path, say: Callable[[str], None]):  # type: ignore[no-untyped-def]
    c = cfg.collect
    assert c is not None
    if c.kind == "import":
        from nat_ray.nat_import import ImportConfig, import_nat

        questions, files = _data_path(cfg, c.questions or ""), [_data_path(cfg, f) for f in c.files]
        view = c.model_dump(mode="json")
        inputs = {p: file_hash(p) for p in [questions, *files]}

        def body() -> dict:
            meta = import_nat(
                ImportConfig(task=c.task, questions=questions, out=str(folder), files=files, model=c.model),
                overwrite=True,
            )
            return meta["counts"]

        return run_stage(folder, "collect", None, view, inputs, body, say)
    from nat_ray.rollout.driver import run_rollout

    assert cfg.rollout is not None and cfg.policy is not None
    view_cfg = cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"task": c.task, "out": str(folder)})})
    view = {"rollout": view_cfg.rollout.model_dump(mode="json"), "policy": cfg.policy.model_dump(mode="json")}
    view["tools"] = cfg.tools.model_dump(mode="json")
    return run_stage(folder, "collect", None, view, {}, lambda: run_rollout(view_cfg)["counts"], say)


def _build(cfg: RunConfig, v: Variant, out: Path, upstream: str, say: Callable[[str], None]):  # type: ignore[no-untyped-def]
    from nat_ray.reformat import ALL, BuildConfig, build

    assert cfg.collect is not None
    folder = out / "sets" / v.name
    config = BuildConfig(
        trajectories=str(out / "trajectories"),
        prompts=str(prompts_file(get_task(cfg.collect.task), cfg.data_dir)),
        mode=v.mode,  # type: ignore[arg-type]
        template=v.template,
        pos_num=ALL if v.pos_num == "all" else int(v.pos_num),
        neg_num=ALL if v.neg_num == "all" else int(v.neg_num),
        seed=v.build_seed,
        out=str(folder / "train.jsonl"),
    )
    view = config.model_dump(mode="json", exclude={"out", "trajectories", "prompts"})
    return run_stage(folder, "build", v.name, view, {"collect": upstream}, lambda: build(config)["counts"], say)


def _train(cfg: RunConfig, v: Variant, out: Path, upstream: str, progress: bool, say):  # type: ignore[no-untyped-def]
    from nat_ray.training.trainer import run_train

    assert cfg.train is not None
    folder = out / "models" / v.name
    data = str(out / "sets" / v.name / "train.jsonl")
    train = cfg.train.model_copy(update={"data": data, "out": str(folder), "seed": v.train_seed})
    view_cfg = cfg.model_copy(update={"train": train})
    view = train.model_dump(mode="json", exclude={"data", "out"})

    def body() -> dict:
        summary = run_train(view_cfg, progress=progress)
        keep = ("step", "final_loss", "dev_perplexity", "tokens_seen", "wall_seconds", "peak_rss_gb_per_worker")
        return {k: summary.get(k) for k in keep}

    return run_stage(folder, "train", v.name, view, {"build": upstream}, body, say)


def _eval(cfg: RunConfig, name: str, model: str, out: Path, upstream: dict, say):  # type: ignore[no-untyped-def]
    from nat_ray.config import PolicyConfig
    from nat_ray.evaluation.driver import run_eval

    assert cfg.eval is not None
    folder = out / "eval" / name
    base = cfg.policy.model_dump() if cfg.policy is not None and cfg.policy.kind == "transformers" else {}
    policy = PolicyConfig.model_validate({**base, "kind": "transformers", "model": model})
    view_cfg = cfg.model_copy(update={"policy": policy, "eval": cfg.eval.model_copy(update={"out": str(folder)})})
    view = {"eval": cfg.eval.model_dump(mode="json", exclude={"out"}), "policy": policy.model_dump(mode="json")}
    view["tools"] = cfg.tools.model_dump(mode="json")

    def body() -> dict:
        m = run_eval(view_cfg, progress=False)
        return {f"{d}.accuracy": x["accuracy"] for d, x in m["datasets"].items()} | {
            "math_average": m.get("math_average")
        }

    return run_stage(folder, "eval", name, view, upstream, body, say)


def _teacher(out: Path, upstream: str, say):  # type: ignore[no-untyped-def]
    from nat_ray.evaluation.driver import eval_trajectories

    folder = out / "eval" / "teacher"

    def body() -> dict:
        m = eval_trajectories(out / "trajectories", folder)
        return {f"{d}.accuracy": x["accuracy"] for d, x in m["datasets"].items()}

    return run_stage(folder, "eval", "teacher", {"teacher": True}, {"collect": upstream}, body, say)
