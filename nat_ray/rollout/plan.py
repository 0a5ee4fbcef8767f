"""What a rollout will run: one episode spec per (question, temperature, sample)."""

from __future__ import annotations

from pathlib import Path

from nat_ray.config import RunConfig
from nat_ray.episode import EpisodeSettings, EpisodeSpec, seed_identity
from nat_ray.prompts import get_template
from nat_ray.tasks import data_file, get_task, load_questions_file, prompts_file, task_file


def prompts_path(cfg: RunConfig) -> Path:
    rc = cfg.rollout_section
    if rc.prompts:
        return Path(rc.prompts)
    return prompts_file(get_task(rc.task), cfg.data_dir)


def source_tag(cfg: RunConfig) -> str:
    pc = cfg.policy_section
    return pc.source or f"rollout:{pc.kind}"


def episode_settings(cfg: RunConfig) -> EpisodeSettings:
    """The task and template resolved once, for the env workers."""
    rc, pc = cfg.rollout_section, cfg.policy_section
    return EpisodeSettings(
        task=get_task(rc.task),
        template=get_template(prompts_path(cfg), rc.template),
        source=source_tag(cfg),
        max_turns=rc.max_turns,
        max_tokens=pc.max_tokens,
        max_attempts=rc.max_episode_attempts,
        seed=cfg.seed,
    )


def plan_episodes(cfg: RunConfig) -> list[EpisodeSpec]:
    rc = cfg.rollout_section
    task = get_task(rc.task)
    path = data_file(rc.questions, cfg.data_dir) if rc.questions else task_file(task, rc.split, cfg.data_dir)
    questions = load_questions_file(task, path)[rc.offset :]
    if rc.limit is not None:
        questions = questions[: rc.limit]
    return [
        EpisodeSpec(task.name, q.id, q.question, q.ground_truth, float(t), s)
        for q in questions
        for t in rc.temperatures
        for s in range(rc.samples)
    ]


def identity(cfg: RunConfig) -> dict:
    """The settings that define a rollout's episodes; resuming into an output made with others is refused."""
    rc, pc = cfg.rollout_section, cfg.policy_section
    return {
        "task": get_task(rc.task).name,
        "split": rc.split,
        "questions": rc.questions,
        "template": rc.template,
        "max_turns": rc.max_turns,
        "policy": {"kind": pc.kind, "model": pc.model, "max_tokens": pc.max_tokens},
        "source": source_tag(cfg),
        **seed_identity(cfg.seed, rc.temperatures),
    }
