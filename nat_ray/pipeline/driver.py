"""``nat-ray pipeline``: collect -> build each variant -> train each -> eval each (+ base model, + teacher) -> report.

    nat-ray pipeline --config configs/quickstart.yaml
    ray job submit --working-dir . -- nat-ray pipeline --config configs/quickstart.yaml

One run folder (``out``): ``trajectories/``, ``regenerated/`` (a study with ``negative_source: regenerated``),
``near-miss/`` (``negative_source: near-miss``),
``sets/<variant>/``, ``models/<variant>/``, ``eval/<variant>/``, ``report/``; each stage output holds a
``_stage.json`` (:class:`~nat_ray.types.StageManifest`). :func:`validate` turns the config into a
:class:`PipelinePlan` (every section a stage needs, present and typed) before any stage runs; each stage runs on its
view of the plan (the same section classes the stage commands read), and is skipped when its view and its inputs are
unchanged (``nat_ray.pipeline.stages``, records in ``nat_ray.records``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from nat_ray.config import (
    EvalConfig,
    PolicyConfig,
    RunConfig,
    TrainConfig,
    dump_config,
)
from nat_ray.config_sections import BuildStageConfig, CollectConfig
from nat_ray.config_train import PREFERENCE_FIELDS, RESILIENCE_FIELDS, SPEED_FIELDS
from nat_ray.engines import ENGINES, serves_checkpoints
from nat_ray.episode import seed_identity
from nat_ray.errors import InputError
from nat_ray.pipeline.heldout import heldout_stage
from nat_ray.pipeline.interim_report import interim_report
from nat_ray.pipeline.mirror import StageMirror
from nat_ray.pipeline.power_plan import plan_lines
from nat_ray.pipeline.rollouts import regenerate, rollout_stage, rollout_view, round_rollout
from nat_ray.pipeline.sets import (
    build_stage,
    compute_budgets,
    decide_controls,
    mode_train,
    set_upstream,
    train_section,
)
from nat_ray.pipeline.stages import moved_inputs, run_stage
from nat_ray.pipeline.variants import Variant, check_counts, expand, sft_init
from nat_ray.records import TABLE, RunLayout, StageManifest, config_hash, file_hash, read_stage
from nat_ray.tasks import TaskSpec, data_file, get_task, prompts_file
from nat_ray.tracking import NoTracker, Tracker, make_tracker

Say = Callable[[str], None]


@dataclass(frozen=True)
class PipelinePlan:
    """The config as the stages need it: every section present and typed, the variants expanded."""

    cfg: RunConfig
    out: Path
    task: TaskSpec
    collect: CollectConfig
    train: TrainConfig
    eval: EvalConfig
    variants: list[Variant]
    mirror: StageMirror | None = None  # `storage:` set: each completed stage is uploaded there
    tracker: Tracker = field(default_factory=NoTracker)  # `tracking:` set: each stage is logged there

    def stage(
        self,
        folder: Path,
        stage: str,
        variant: str | None,
        view: object,
        upstream: dict[str, str],
        body: Callable[[], dict],
        say: Say,
    ) -> StageManifest:
        """:func:`run_stage` with this run's mirror and tracker, paths inside the run folder hashed relative to it."""
        return run_stage(folder, stage, variant, view, upstream, body, say, self.mirror, self.tracker, self.out)

    @property
    def regenerates(self) -> bool:
        return any(v.regenerated for v in self.variants)

    def engine(self, model: str, source: str | None = None) -> PolicyConfig:
        """An in-cluster engine on ``model``: the ``engine`` section, else the ``policy`` section when it is an engine
        (``transformers``, ``vllm`` or ``openvino``, with its batch, token and GPU settings), else the default CPU
        engine, ``openvino`` (``policy`` may name an endpoint: the teacher that collects, which cannot serve this
        run's checkpoints)."""
        pc = self.cfg.engine or self.cfg.policy
        base = pc.model_dump() if pc is not None and serves_checkpoints(pc.kind) else {"kind": "openvino"}
        return PolicyConfig.model_validate({**base, "model": model, "source": source})


def validate(cfg: RunConfig) -> PipelinePlan:
    """Everything checkable before any stage runs."""
    if cfg.collect is None or cfg.train is None or cfg.eval is None:
        missing = [name for name in ("collect", "train", "eval") if getattr(cfg, name) is None]
        raise InputError(f"a pipeline needs the sections: {', '.join(missing)}")
    task = get_task(cfg.collect.task)
    if cfg.collect.kind == "rollout" and (cfg.rollout is None or cfg.policy is None):
        raise InputError("collect kind 'rollout' needs the 'rollout' and 'policy' sections")
    variants = expand(cfg.build or BuildStageConfig(), cfg.study, cfg.train.seed)
    if any(v.mode == "nat-graded" for v in variants) and task.family != "qa":
        raise InputError(f"study.modes: nat-graded needs a task with F1 (hotpotqa), not {task.name}")
    if any(v.round > 1 for v in variants) and cfg.rollout is None:
        raise InputError(
            "study.rounds: a later round rolls out the train questions with the round before's model: it needs the "
            "'rollout' section (questions, temperatures, turns)"
        )
    if any(v.regenerated for v in variants) and cfg.rollout is None:
        raise InputError(
            "study.negative_source: 'regenerated' needs the 'rollout' section (questions, temperatures, turns of the "
            "rollout that regenerates the negatives)"
        )
    if any(v.near_miss for v in variants) and task.family != "math":
        raise InputError(f"study.negative_source: 'near-miss' changes a calculator step: a math task, not {task.name}")
    if cfg.engine is not None and not serves_checkpoints(cfg.engine.kind):
        served = [k for k in ENGINES if serves_checkpoints(k)]
        raise InputError(f"engine.kind: one of {', '.join(served)} (it serves the run's models), not {cfg.engine.kind}")
    if cfg.rollout is not None and get_task(cfg.rollout.task).name != task.name:
        raise InputError(f"rollout.task: {cfg.rollout.task!r}, but collect.task is {cfg.collect.task!r}")
    from nat_ray.prompts import get_template
    from nat_ray.reformat import DEFAULT_TEMPLATE

    for v in variants:
        get_template(prompts_file(task, cfg.data_dir), v.template or DEFAULT_TEMPLATE[v.mode])
        mode_train(cfg.train, cfg.study.train_by_mode if cfg.study else None, v.mode)
    mirror = StageMirror(Path(cfg.out), cfg.storage) if cfg.storage else None
    tracker = make_tracker(cfg.tracking, Path(cfg.out))
    return PipelinePlan(cfg, Path(cfg.out), task, cfg.collect, cfg.train, cfg.eval, variants, mirror, tracker)


def run_pipeline(cfg: RunConfig, progress: bool = True) -> dict:
    # the stage lines are the run's log (a `ray job logs` or a redirected stdout reads them): they print whether or
    # not ``progress`` is set, which is about the bars of training and rollouts only
    say: Say = partial(print, flush=True)
    plan = validate(cfg)
    if plan.mirror is not None:  # stages finished elsewhere (a lost head, another machine) are not redone
        for rel in plan.mirror.pull():
            say(f"pipeline: {rel}: downloaded from {plan.mirror.uri}")
    identity = _collect_identity(plan)  # hashes the data files: once, for the check and the stage
    check_out(plan, identity)
    plan.tracker.start(plan.out.name, dump_config(cfg))
    try:
        summary = _run_stages(plan, identity, progress, say)
    except BaseException:
        plan.tracker.end(ok=False)
        raise
    plan.tracker.end(ok=True)
    return summary


def _run_stages(plan: PipelinePlan, identity: tuple[dict, dict[str, str]], progress: bool, say: Say) -> dict:
    cfg, out = plan.cfg, plan.out
    own = [v.name for v in plan.variants if not v.control]
    controls = " (+ study.controls, decided once the sets are built)" if len(own) < len(plan.variants) else ""
    say(f"pipeline: {len(own)} variant(s){controls}: {', '.join(own)}; run folder {out}")
    for line in plan_lines(plan):
        say(line)
    collected = _collect(plan, identity, say)
    check_counts(
        plan.variants, _count(collected, "positive"), _count(collected, "negative"), str(RunLayout(out).trajectories)
    )
    evals: dict[str, str] = {}
    near: dict[str, str] = {}
    if any(v.near_miss for v in plan.variants):
        made = _near_miss(plan, collected, say)
        where = f"the near misses ({RunLayout(out).near_miss})"
        check_counts(plan.variants, 0, _count(made, "negative"), where, "near-miss")
        near = {"near_miss": made.config_hash}
    variants, built_first, sizes, goals = compute_budgets(plan, collected, say, near)
    state = _Trained(collected, near, built_first)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # (the stage manifests' clock)
    for v in variants:
        made = _variant(plan, v, train_section(plan, v, sizes, goals), state, progress, say)
        evals[v.name] = made.config_hash
        interim_report(plan, made, started, say)
    controls, sizes, goals = decide_controls(plan, say)
    for v in controls:
        made = _variant(plan, v, train_section(plan, v, sizes, goals), state, progress, say)
        evals[v.name] = made.config_hash
        interim_report(plan, made, started, say)
    variants += controls
    if cfg.study is None or cfg.study.base:
        _eval(plan, "base", plan.train.model, {}, say)
        heldout_stage(plan, "base", plan.train.model, {"collect": collected.config_hash}, say, base=True)
    if (cfg.study is None or cfg.study.teacher) and plan.collect.kind == "import":
        _teacher(plan, collected.config_hash, say)
    from nat_ray.evaluation.report import write_report

    rows = [v.__dict__ for v in variants]
    report = plan.stage(
        RunLayout(out).report,
        "report",
        None,
        {"variants": [v.name for v in variants], "task": plan.task.name},
        evals,
        lambda: write_report(out, dump_config(cfg), rows),
        say,
    )
    plan.tracker.artifacts(RunLayout(out).report, "report")
    say((RunLayout(out).report / TABLE).read_text())
    names = [v.name for v in variants]
    return {"out": str(out), "variants": names, "report": str(RunLayout(out).report), **report.counts}


@dataclass
class _Trained:
    """What the variants of a run share as they train one after another: the stages they build on."""

    collected: StageManifest
    near: dict[str, str]  # the near-miss stage's hash, for the variants built from it
    built_first: dict[str, StageManifest]  # sets built before any training (study.match)
    trained: dict[str, StageManifest] = field(default_factory=dict)
    regenerated: StageManifest | None = None


def _variant(
    plan: PipelinePlan, v: Variant, train: TrainConfig, state: _Trained, progress: bool, say: Say
) -> StageManifest:
    """One variant's set, model, eval and held-out perplexity (the regenerate or round rollout it needs first);
    returns its eval stage."""
    cfg, out, trained = plan.cfg, plan.out, state.trained
    upstream = set_upstream(v, state.collected, state.near)
    if v.regenerated:
        if state.regenerated is None:
            source = cfg.study.regenerate_from if cfg.study else "vanilla"
            state.regenerated = regenerate(plan, source, trained[source].config_hash, say)
            where = f"the regenerated trajectories ({RunLayout(out).regenerated})"
            hint = ": roll out more questions (rollout.limit, rollout.temperatures)"
            check_counts(plan.variants, 0, _count(state.regenerated, "negative"), where, "regenerated", hint)
        upstream["regenerate"] = state.regenerated.config_hash
    if v.round > 1:  # the round before's model rolls out the train questions: this round's trajectories
        prev = v.previous or ""
        upstream["round"] = round_rollout(plan, v, prev, trained[prev].config_hash, say).config_hash
    built = state.built_first.get(v.name) or build_stage(plan, v, upstream, say)
    init = None
    if v.round > 1 and cfg.study is not None and cfg.study.round_init == "previous":
        prev = v.previous or ""
        init = (str(RunLayout(out).model(prev)), trained[prev].config_hash)
    elif v.preference and v.round == 1 and (cfg.study is None or cfg.study.preference_init == "sft"):
        source = sft_init(v, plan.variants)
        assert source is not None  # validate() refused a study without one
        init = (str(RunLayout(out).model(source.name)), trained[source.name].config_hash)
    trained[v.name] = _train(plan, v, train, built.config_hash, progress, say, init)
    model = str(RunLayout(out).model(v.name))
    evaluated = _eval(plan, v.name, model, {"train": trained[v.name].config_hash}, say)
    heldout_stage(
        plan, v.name, model, {"train": trained[v.name].config_hash, "collect": state.collected.config_hash}, say
    )
    return evaluated


def _near_miss(plan: PipelinePlan, collected: StageManifest, say: Say) -> StageManifest:
    """One near miss per collected correct trajectory (``nat_ray.near_miss``): of the questions the ``rollout``
    section covers where there is one (those the model's own failures come from, so that the two kinds of negative
    differ in kind only), else of every collected question."""
    from nat_ray.near_miss import make_near_misses
    from nat_ray.rollout.plan import plan_episodes

    layout = RunLayout(plan.out)
    ids = sorted({e.id for e in plan_episodes(plan.cfg)}) if plan.cfg.rollout is not None else None
    seed = plan.cfg.build.seed if plan.cfg.build is not None else BuildStageConfig().seed
    turns = plan.collect.max_turns
    view = {"seed": seed, "questions": ids, "max_turns": turns}

    def body() -> dict:
        return make_near_misses(layout.trajectories, layout.near_miss, seed, set(ids) if ids else None, turns).counts

    return plan.stage(layout.near_miss, "near-miss", None, view, {"collect": collected.config_hash}, body, say)


def _count(stage: StageManifest, label: str) -> int:
    """Trajectories with ``label`` in a collect / regenerate stage's output, from its manifest."""
    return int(stage.counts.get(label) or 0)


def _data_path(cfg: RunConfig, path: str) -> str:
    p = data_file(path, cfg.data_dir)
    if not p.exists():
        raise InputError(f"collect: {path} does not exist (nor under the data folder)")
    return str(p)


def _collect_identity(plan: PipelinePlan) -> tuple[dict, dict[str, str]]:
    """The collect stage's view and inputs (data files with their content hashes)."""
    c = plan.collect
    if c.kind in ("import", "gold"):
        paths = [_data_path(plan.cfg, c.questions or ""), *(_data_path(plan.cfg, f) for f in c.files)]
        # gold's own fields stay out of an import's view: runs collected before they existed keep their hash
        view = c.model_dump(mode="json", exclude=set() if c.kind == "gold" else {"max_turns", "limit"})
        return view, {p: file_hash(p) for p in paths}
    view, _ = rollout_view(plan, RunLayout(plan.out).trajectories, plan.cfg.rollout_section, plan.cfg.policy_section)
    return view, {}


def check_out(plan: PipelinePlan, identity: tuple[dict, dict[str, str]]) -> None:
    """A run folder whose trajectories were collected with another config holds another run: refuse it before any
    stage runs, rather than delete what may have cost a long rollout (later stages are redone when they change)."""
    old = read_stage(RunLayout(plan.out).trajectories)
    if old is not None and old.config_hash != config_hash(*identity) and not moved_inputs(old, *identity):
        raise InputError(
            f"out: {plan.out} holds a run whose trajectories were collected with another config (collect, its data "
            f"files, or the collecting policy differ): choose another out, or remove "
            f"{RunLayout(plan.out).trajectories} to collect again"
        )


def _collect(plan: PipelinePlan, identity: tuple[dict, dict[str, str]], say: Say) -> StageManifest:
    c, folder = plan.collect, RunLayout(plan.out).trajectories
    view, inputs = identity
    if c.kind == "import":
        from nat_ray.nat_import import ImportConfig, import_nat

        questions, *files = inputs

        def body() -> dict:
            section = c.model_copy(update={"questions": questions, "files": files})  # resolved in the data folder
            return import_nat(ImportConfig.from_section(section, str(folder)), overwrite=True).counts

        return plan.stage(folder, "collect", None, view, inputs, body, say)
    if c.kind == "gold":
        from nat_ray.gold import collect_gold

        (questions,) = inputs

        def gold() -> dict:
            return collect_gold(c.task, questions, folder, max_turns=c.max_turns, limit=c.limit).counts

        return plan.stage(folder, "collect", None, view, inputs, gold, say)
    return rollout_stage(plan, "collect", folder, plan.cfg.rollout_section, plan.cfg.policy_section, {}, say)


def _train(
    plan: PipelinePlan,
    v: Variant,
    train: TrainConfig,
    upstream: str,
    progress: bool,
    say: Say,
    init: tuple[str, str] | None = None,
) -> StageManifest:
    """Train a variant; ``init``: (model folder, its train stage's hash) it starts from instead of ``train.model``
    (a preference variant from the study's SFT model: also its frozen reference)."""
    from nat_ray.training.trainer import run_train

    folder = RunLayout(plan.out).model(v.name)
    data = str(RunLayout(plan.out).set_file(v.name))
    update = {"data": data, "out": str(folder), "seed": v.train_seed, "objective": v.objective}
    train = train.model_copy(update=update | ({"model": init[0]} if init else {}))
    view_cfg = plan.cfg.model_copy(update={"train": train})

    def body() -> dict:
        summary = run_train(view_cfg, progress=progress)
        keep = ("step", "final_loss", "dev_perplexity", "tokens_seen", "wall_seconds", "peak_rss_gb_per_worker")
        return {k: summary.get(k) for k in keep}

    # (an SFT variant's view leaves the preference settings out: its hash is the one it had before they existed)
    exclude = {"data", "out"} | SPEED_FIELDS | (PREFERENCE_FIELDS if v.objective == "sft" else set())
    neutral = {f: TrainConfig.model_fields[f].default for f in RESILIENCE_FIELDS}
    view = train.model_copy(update=neutral).model_dump(mode="json", exclude=exclude)
    inputs = {"build": upstream} | ({"init": init[1]} if init else {})
    return plan.stage(folder, "train", v.name, view, inputs, body, say)


def _eval(plan: PipelinePlan, name: str, model: str, upstream: dict[str, str], say: Say) -> StageManifest:
    from nat_ray.evaluation.driver import run_eval

    folder = RunLayout(plan.out).eval_dir(name)
    policy = plan.engine(model)
    view_cfg = plan.cfg.model_copy(update={"policy": policy, "eval": plan.eval.model_copy(update={"out": str(folder)})})
    # eval.hint stays out of the view at its default: evals made before it existed keep their hash
    hint = {"hint"} if plan.eval.hint == "correct" else set()
    view = {"eval": plan.eval.model_dump(mode="json", exclude={"out"} | hint), "policy": policy.model_dump(mode="json")}
    view["tools"] = plan.cfg.tools.model_dump(mode="json")
    view |= seed_identity(plan.cfg.seed, [plan.eval.temperature])

    def body() -> dict:
        m = run_eval(view_cfg, progress=False)
        return {f"{d}.accuracy": x["accuracy"] for d, x in m["datasets"].items()} | {
            "math_average": m.get("math_average")
        }

    return plan.stage(folder, "eval", name, view, upstream, body, say)


def _teacher(plan: PipelinePlan, upstream: str, say: Say) -> StageManifest:
    from nat_ray.evaluation.driver import eval_trajectories

    folder = RunLayout(plan.out).eval_dir("teacher")

    def body() -> dict:
        m = eval_trajectories(RunLayout(plan.out).trajectories, folder)
        return {f"{d}.accuracy": x["accuracy"] for d, x in m["datasets"].items()}

    return plan.stage(folder, "eval", "teacher", {"teacher": True}, {"collect": upstream}, body, say)
