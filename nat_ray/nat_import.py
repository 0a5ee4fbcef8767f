"""Import the paper's trajectory files (NAT / NATInstruct JSON) into a trajectories dataset.

Each file is a JSON list of ``{"conversations": [{"role", "content", "loss"}], "info": {"reward", "gt", "pred", …},
"id", "source"}``. The conversation starts at the first assistant turn; the question is joined by ``id`` from the
task's question file. The label comes from ``info.reward``; em/f1/gt/pred are kept. In the released files ``source``
is the sampling temperature (``"0.7"``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from nat_ray.config_sections import CollectConfig
from nat_ray.errors import InputError, first_validation_error
from nat_ray.records import DatasetManifest
from nat_ray.storage import manifest, read_records, write_trajectories
from nat_ray.tasks import TaskSpec, get_task, load_questions_file
from nat_ray.types import Label, StrictModel, Trajectory, Turn

_MODEL_IN_NAME = re.compile(r"_(gpt-[0-9a-z.\-]+?)_(?:positive|negative)", re.IGNORECASE)


class ImportConfig(StrictModel):
    task: str
    questions: str
    out: str
    files: list[str]
    model: str | None = None  # policy that produced the files; default: from the file name (…_gpt-3.5_…)

    @classmethod
    def from_section(cls, collect: CollectConfig, out: str) -> ImportConfig:
        """The config's ``collect`` section (kind ``import``; what the pipeline and ``nat-ray import-nat`` both
        fill), written to ``out``."""
        if collect.kind != "import" or collect.questions is None:
            raise InputError("collect: an import needs kind 'import', questions and files")
        return cls(task=collect.task, questions=collect.questions, out=out, files=collect.files, model=collect.model)


def _temperature(source: object) -> float | None:
    try:
        return float(source)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _record_to_trajectory(
    task: TaskSpec, rec: dict, where: str, questions: dict, model: str, source: str, samples: Counter
) -> Trajectory:
    for key in ("conversations", "info", "id"):
        if key not in rec:
            raise InputError(f"{where}: trajectory record has no {key!r} key")
    info = rec["info"]
    if not isinstance(info, dict) or "reward" not in info:
        raise InputError(f"{where}: 'info' must be an object with a 'reward' key")
    qid = str(rec["id"])
    question = questions.get(qid)
    if question is None:
        raise InputError(f"{where}: trajectory id {qid!r} has no question in the questions file")
    try:
        turns = [Turn.model_validate(m) for m in rec["conversations"]]
    except (ValidationError, TypeError) as exc:
        raise InputError(f"{where}: 'conversations' must be a list of {{role, content, loss}}: {exc}") from None
    temperature = _temperature(rec.get("source"))
    sample_key = (qid, temperature)
    sample_index = samples[sample_key]
    samples[sample_key] += 1
    reward = bool(info["reward"])
    try:
        gt = task.ground_truth(info["gt"]) if "gt" in info else question.ground_truth
    except ValueError as exc:
        raise InputError(f"{where}: field info.gt: {exc}") from None
    pred = info.get("pred")
    return Trajectory(
        id=qid,
        task=task.name,
        question=question.question,
        ground_truth=gt,
        turns=turns,
        prediction=None if pred is None else str(pred),
        reward=reward,
        em=info.get("em"),
        f1=info.get("f1"),
        label=Label.POSITIVE if reward else Label.NEGATIVE,
        model=model,
        temperature=temperature,
        sample_index=sample_index,
        source=source,
    )


def import_nat(config: ImportConfig, overwrite: bool = False) -> DatasetManifest:
    """Read the files, join questions, write the dataset folder. Returns its manifest."""
    task = get_task(config.task)
    if not config.files:
        raise InputError("import-nat needs at least one trajectory file")
    questions = {q.id: q for q in load_questions_file(task, config.questions)}
    samples: Counter = Counter()
    trajectories: list[Trajectory] = []
    for file in config.files:
        match = _MODEL_IN_NAME.search(Path(file).name)
        model = config.model or (match.group(1) if match else "unknown")
        source = f"nat-import:{Path(file).name}"
        for where, rec in read_records(file):
            try:
                trajectories.append(_record_to_trajectory(task, rec, where, questions, model, source, samples))
            except ValidationError as exc:
                loc, msg = first_validation_error(exc)
                raise InputError(f"{where}: field {loc}: {msg}") from None
    counts = Counter(t.label.value for t in trajectories)
    meta = manifest(
        "trajectories",
        config.model_dump(mode="json") | {"task": task.name},
        {"trajectories": len(trajectories), **{k.value: counts.get(k.value, 0) for k in Label}},
    )
    write_trajectories(trajectories, config.out, meta, overwrite=overwrite)
    return meta
