"""Read what a policy did: counts by label and finish reason, then episodes as transcripts (``nat-ray show``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from nat_ray.types import Trajectory


def select(
    trajectories: Sequence[Trajectory], label: str | None = None, finish_reason: str | None = None
) -> list[Trajectory]:
    return [
        t
        for t in trajectories
        if (label is None or t.label.value == label)
        and (finish_reason is None or (t.finish_reason is not None and t.finish_reason.value == finish_reason))
    ]


def counts(trajectories: Sequence[Trajectory]) -> str:
    labels = Counter(t.label.value for t in trajectories)
    reasons = Counter(t.finish_reason.value if t.finish_reason else "unknown" for t in trajectories)
    lines = [f"{len(trajectories)} episodes"]
    lines.append("by label:          " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    lines.append("by finish reason:  " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    return "\n".join(lines)


def transcript(t: Trajectory) -> str:
    """One episode as the agent saw it: question, each reply and observation, how it ended, the grade."""
    head = f"=== {t.task} {t.id}  {t.label.value}"
    head += f" ({t.finish_reason.value})" if t.finish_reason else ""
    head += f"  temperature {t.temperature}  model {t.model}"
    lines = [head, f"Question: {t.question}", f"Ground truth: {t.ground_truth}"]
    for turn in t.turns:
        prefix = "Agent> " if turn.role == "assistant" else ""
        lines.extend(prefix + line if i == 0 else "       " + line for i, line in enumerate(turn.content.split("\n")))
    if t.malformed_reply is not None:
        lines.append("Agent (malformed, not in the turns)> " + t.malformed_reply.replace("\n", "\n       "))
    if t.error:
        lines.append(f"Error: {t.error}")
    if t.reward is not None:
        grade = f"Prediction: {t.prediction!r}  reward {t.reward}"
        if t.f1 is not None:
            grade += f"  em {t.em}  f1 {t.f1:.2f}"
        lines.append(grade)
    return "\n".join(lines)


def show(
    trajectories: Sequence[Trajectory], label: str | None = None, finish_reason: str | None = None, n: int = 3
) -> str:
    chosen = select(trajectories, label, finish_reason)
    parts = [counts(trajectories)]
    if label or finish_reason:
        parts.append(f"{len(chosen)} match the filter")
    parts.extend(transcript(t) for t in chosen[:n])
    return "\n\n".join(parts)
