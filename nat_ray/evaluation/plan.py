"""What an eval runs: the template (``auto`` reads the checkpoint's training mode), each data set's questions and
episode settings, and the identity that a resumed eval must match."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from nat_ray.config import RunConfig
from nat_ray.engines import reads_dtype, serves_checkpoints
from nat_ray.episode import EpisodeSettings, EpisodeSpec, seed_identity
from nat_ray.errors import InputError
from nat_ray.prompts import PromptTemplate, get_template
from nat_ray.reformat import HINT_MODES
from nat_ray.tasks import data_file, get_task, load_questions_file, prompts_file, resolve_data_dir, task_file

log = logging.getLogger(__name__)

# The local corpus holds the paragraphs of these HotpotQA questions (RPT's distractor sets), not of the paper's dev
# set: with local search, HotpotQA is evaluated on them unless eval.questions says otherwise.
LOCAL_HOTPOTQA_QUESTIONS = "hotpotqa_distractor/rpt_test.jsonl"


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    questions: Path
    settings: EpisodeSettings
    specs: list[EpisodeSpec]
    note: str | None = None


def checkpoint_training(cfg: RunConfig) -> dict | None:
    """How the policy's checkpoint was trained (``nat_ray_train.json``), if it is one of ``nat-ray train``."""
    pc = cfg.policy
    if pc is None or not serves_checkpoints(pc.kind):
        return None
    from nat_ray.models import resolve_model_path, training_info

    return training_info(resolve_model_path(pc.model))


def _has_hint(template: PromptTemplate) -> bool:
    return template.question_prompt is None and (
        template.correct_question_prompt is not None or bool(template.class_prompts)
    )


def resolve_template(cfg: RunConfig, training: dict | None) -> tuple[str, str]:
    """(template name, why): ``auto`` follows the checkpoint's training mode; an explicit one is kept."""
    mode = (training or {}).get("mode")
    if cfg.eval_section.template != "auto":
        return cfg.eval_section.template, "eval.template"
    if mode in HINT_MODES:
        return training["template"], f"auto: trained in {mode} mode with {training['template']!r}; the correct hint"
    if mode is not None:
        return (training or {}).get("template") or "zero-shot", f"auto: trained in {mode} mode"
    return "zero-shot", "auto: not a checkpoint of nat-ray train"


def check_template_fits(template: PromptTemplate, training: dict | None, name: str) -> None:
    """Warn when a template does not match how the checkpoint was trained (a NAT model without its hint, …)."""
    mode = (training or {}).get("mode")
    if mode is None:
        return
    if mode in HINT_MODES and not _has_hint(template):
        log.warning(
            "eval.template %r has no correct-answer hint, but the checkpoint was trained in %s mode with %r",
            name,
            mode,
            training.get("template"),  # type: ignore[union-attr]
        )
    elif mode not in HINT_MODES and _has_hint(template):
        log.warning("eval.template %r carries a NAT hint, but the checkpoint was trained in %s mode", name, mode)


def questions_path(cfg: RunConfig, dataset: str) -> tuple[Path, str | None]:
    task = get_task(dataset)
    questions = cfg.eval_section.questions
    given = questions.get(dataset) or questions.get(task.paper_name)
    if given:
        path = data_file(given, cfg.data_dir)
        if not path.exists():
            raise InputError(f"eval.questions.{dataset}: {path} does not exist")
        return path, None
    search = cfg.tools.search
    if task.name == "hotpotqa" and search is not None and search.kind == "local":
        note = (
            f"hotpotqa: local search corpus, so the questions are {LOCAL_HOTPOTQA_QUESTIONS} (their paragraphs are "
            "in the corpus), not the paper's dev_random_500"
        )
        return resolve_data_dir(cfg.data_dir) / LOCAL_HOTPOTQA_QUESTIONS, note
    note = None
    if task.name == "strategyqa" and search is not None and search.kind == "local" and search.index is not None:
        if "strategyqa_test_explanations" not in search.index.sources:
            note = (
                "strategyqa: the local corpus has no passages about the test questions (the StrategyQA facts are of "
                "the train questions); add strategyqa_test_explanations to tools.search.index.sources for a "
                "stand-in of the web's coverage"
            )
        else:
            note = "strategyqa: the corpus includes the test questions' explanations (verdict removed)"
    return task_file(task, "test", cfg.data_dir), note


def plan_eval(cfg: RunConfig, template_name: str, training: dict | None) -> list[DatasetPlan]:
    ec, pc = cfg.eval_section, cfg.policy_section
    plans = []
    for dataset in ec.datasets:
        task = get_task(dataset)
        prompts = prompts_file(task, cfg.data_dir)
        try:
            template = get_template(prompts, template_name)
        except InputError as exc:
            raise InputError(f"eval on {task.name}: {exc}") from None
        template.inference_messages("?")
        check_template_fits(template, training, template_name)
        if ec.hint == "incorrect":
            try:
                template = template.with_incorrect_hint()
            except InputError as exc:
                raise InputError(f"eval.hint: incorrect on {task.name}: {exc} (a NAT template's hint)") from None
        path, note = questions_path(cfg, dataset)
        questions = load_questions_file(task, path)[ec.offset :]
        if ec.limit is not None:
            questions = questions[: ec.limit]
        settings = EpisodeSettings(
            task=task,
            template=template,
            source=pc.source or f"eval:{pc.kind}",
            max_turns=ec.max_turns,
            max_tokens=pc.max_tokens,
            max_attempts=ec.max_episode_attempts,
            seed=cfg.seed,
        )
        specs = [
            EpisodeSpec(task.name, q.id, q.question, q.ground_truth, ec.temperature, s)
            for q in questions
            for s in range(ec.samples)
        ]
        plans.append(DatasetPlan(task.name, path, settings, specs, note))
    return plans


def eval_policy(cfg: RunConfig) -> RunConfig:
    """The config an eval runs with: under ``eval.repeatable`` an engine that reads ``policy.dtype`` (transformers,
    openvino) decodes in float32."""
    ec, pc = cfg.eval_section, cfg.policy_section
    if not ec.repeatable or not reads_dtype(pc.kind) or pc.dtype == "float32":
        return cfg
    if pc.dtype == "bfloat16":
        raise InputError(
            "policy.dtype: bfloat16 with eval.repeatable: true: a bf16 decode depends on what shares its batch, so a "
            "rerun would not repeat itself; set eval.repeatable: false to evaluate in bfloat16, or policy.dtype: auto"
        )
    return cfg.model_copy(update={"policy": pc.model_copy(update={"dtype": "float32"})})


def identity(cfg: RunConfig, plan: DatasetPlan) -> dict:
    """The settings that define a data set's eval episodes; resuming into an output made with others is refused."""
    ec, pc = cfg.eval_section, cfg.policy_section
    return {
        "dataset": plan.name,
        "questions": str(plan.questions),
        "template": plan.settings.template.name,
        "temperature": ec.temperature,
        "samples": ec.samples,
        "max_turns": ec.max_turns,
        "policy": {"kind": pc.kind, "model": pc.model, "max_tokens": pc.max_tokens}
        | ({"dtype": pc.dtype} if reads_dtype(pc.kind) else {}),
        "source": plan.settings.source,
        **seed_identity(cfg.seed, [ec.temperature]),
    }
