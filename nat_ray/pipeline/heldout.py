"""``study.heldout``: each model's perplexity on gold trajectories no model of the run saw (the paper's Figure 4), a
stage per variant after its eval (and the base model's). The held-out positives are the last N collected ones; a
variant whose set or whose regenerated rollout holds any of their questions is refused, by name.

It runs as one Ray task with the training worker's CPUs (a forward pass of the checkpoint), so on a cluster it lands
where a training worker would, not on the head node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nat_ray.records import RunLayout, StageManifest
from nat_ray.storage import read_training_rows, read_trajectories
from nat_ray.types import Example, LabelledCompletion, PreferencePair

if TYPE_CHECKING:  # the driver calls this module
    from nat_ray.pipeline.driver import PipelinePlan

Say = Callable[[str], None]


def heldout_stage(
    plan: PipelinePlan, name: str, model: str, upstream: dict[str, str], say: Say, base: bool = False
) -> StageManifest | None:
    """The ``name`` model's held-out perplexity (None when the study holds none out). ``base``: the base model,
    asked with the vanilla prompt."""
    n = plan.cfg.study.heldout if plan.cfg.study else 0
    if not n:
        return None
    from nat_ray.models import resolve_model_path, training_info
    from nat_ray.reformat import DEFAULT_TEMPLATE

    layout = RunLayout(plan.out)
    info = {} if base else (training_info(Path(model)) or {})
    mode = info.get("mode") or "vanilla"
    template = info.get("template") or DEFAULT_TEMPLATE[mode]
    view = {"heldout": n, "mode": mode, "template": template, "max_length": plan.train.max_length}

    def body() -> dict:
        import ray

        from nat_ray.prompts import get_template
        from nat_ray.ray_init import init_ray
        from nat_ray.tasks import prompts_file
        from nat_ray.training.perplexity import held_out, heldout_examples, perplexity

        used: set[str] = set()
        if not base:
            kind = {"dpo": PreferencePair, "kto": LabelledCompletion}.get(mode, Example)
            used |= {e.id for e in read_training_rows(layout.set_file(name), kind)}
            if layout.regenerated.exists():
                used |= {t.id for t in read_trajectories(layout.regenerated)}
        gold = held_out(read_trajectories(layout.trajectories), n, used)
        examples = heldout_examples(gold, get_template(prompts_file(plan.task, plan.cfg.data_dir), template), mode)
        init_ray(plan.cfg.ray_address)
        task = ray.remote(num_cpus=plan.train.cpus_per_worker, num_gpus=1 if plan.train.use_gpu else 0)(perplexity)
        result = ray.get(task.remote(str(resolve_model_path(model)), examples, plan.train.max_length))
        return {"perplexity": round(result.perplexity, 4), "examples": result.examples,
                "loss_tokens": result.loss_tokens, "truncated": result.truncated}  # fmt: skip

    return plan.stage(layout.heldout_dir(name), "heldout", name, view, upstream, body, say)
