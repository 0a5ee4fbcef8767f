"""The paper's six tasks: where their questions live, how their answers are graded, which prompts they use.

Files are found under a data folder as ``nat-ray data prepare`` lays it out (``nat/dataset/<Task>/...``,
``gsm8k/``; docs/data.md): ``--data-dir`` / ``data_dir`` in config, else ``$NAT_RAY_DATA_DIR``, else the per-user
cache ``data prepare`` fills by default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nat_ray.errors import InputError
from nat_ray.storage import read_records
from nat_ray.tasks.graders import extract_math_answer, grade_math, grade_qa, grade_strategyqa, parse_bool_gt
from nat_ray.types import Grade

Family = Literal["math", "qa", "yesno"]


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    ground_truth: str  # canonical: the math answer after '#### ', the QA answer, or 'true'/'false'


@dataclass(frozen=True)
class TaskSpec:
    name: str  # canonical spelling, used everywhere in nat_ray
    paper_name: str  # the paper's spelling (ASDiv, StrategyQA, ...), also accepted as input
    family: Family
    splits: dict[str, str]  # split -> file under the data folder
    prompts: str  # the paper's prompt templates file under the data folder

    def ground_truth(self, answer: object) -> str:
        if self.family != "yesno" and isinstance(answer, bool):
            # A bool answer is StrategyQA's: trajectories or questions of another task were passed.
            raise ValueError(f"a yes/no answer ({answer}), but task {self.name} expects text")
        if self.family == "math":
            return extract_math_answer(str(answer))
        if self.family == "yesno":
            return "true" if parse_bool_gt(answer) else "false"  # type: ignore[arg-type]
        return str(answer)

    def grade(self, ground_truth: object, prediction: str | None, numeric: bool = False) -> Grade:
        if self.family == "math":
            return grade_math(str(ground_truth), prediction, numeric=numeric)
        if self.family == "qa":
            return grade_qa(str(ground_truth), prediction)
        return grade_strategyqa(ground_truth, prediction)  # type: ignore[arg-type]

    @property
    def tool(self) -> str:
        return "calculate" if self.family == "math" else "search"


_MATH_PROMPTS = "nat/prompts/gsm8k/gsm8k_conversation.json"
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            "gsm8k",
            "gsm8k",
            "math",
            {"train": "gsm8k/train.jsonl", "test": "nat/dataset/gsm8k/test.json"},
            _MATH_PROMPTS,
        ),
        TaskSpec("asdiv", "ASDiv", "math", {"test": "nat/dataset/ASDiv/test_one_answer.jsonl"}, _MATH_PROMPTS),
        TaskSpec("svamp", "SVAMP", "math", {"test": "nat/dataset/SVAMP/test.jsonl"}, _MATH_PROMPTS),
        TaskSpec("multiarith", "MultiArith", "math", {"test": "nat/dataset/MultiArith/test.jsonl"}, _MATH_PROMPTS),
        TaskSpec(
            "hotpotqa",
            "hotpotqa",
            "qa",
            {
                "train": "nat/dataset/hotpotqa/train_random_8000.json",
                "test": "nat/dataset/hotpotqa/dev_random_500.json",
            },
            "nat/prompts/hotpotqa/hotpotqa_conversation.json",
        ),
        TaskSpec(
            "strategyqa",
            "StrategyQA",
            "yesno",
            {"train": "nat/dataset/strategyqa/train.jsonl", "test": "nat/dataset/strategyqa/test_random_500.jsonl"},
            "nat/prompts/StrategyQA/StrategyQA_conversation.json",
        ),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by its name or the paper's spelling, in any case."""
    task = TASKS.get(name.strip().lower())
    if task is None:
        raise InputError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return task


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise InputError(f"data folder {path} does not exist")
        return path
    env = os.environ.get("NAT_RAY_DATA_DIR")
    if env:
        if not Path(env).is_dir():
            raise InputError(f"NAT_RAY_DATA_DIR={env} is not a folder")
        return Path(env)
    from nat_ray.data_sources import default_data_dir

    prepared = default_data_dir()
    if (prepared / "nat").is_dir():
        return prepared
    raise InputError(f"no data folder: {prepared} holds no prepared data; run `nat-ray data prepare` (the public "
                     "files, pinned and checksummed; --from DIR for a local copy), or pass --data-dir / set "
                     "NAT_RAY_DATA_DIR")  # fmt: skip


def data_file(path: str | Path, data_dir: str | Path | None = None) -> Path:
    """A file given in config: as written when it exists (or is absolute), else the same path under the data folder
    (``hotpotqa_distractor/rpt_dev.jsonl``). Existence past that is the caller's to check."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return _in_data_dir(str(p), data_dir, table_only=True)


def _in_data_dir(rel: str, data_dir: str | Path | None, table_only: bool = False) -> Path:
    """``rel`` under the data folder; a file of the data table that is missing says which set to prepare."""
    from nat_ray.data_sources import SOURCES, prepare_hint

    p = resolve_data_dir(data_dir) / rel
    known = any(f.path == rel for s in SOURCES.values() for f in s.files)
    if not p.exists() and (known or not table_only):
        raise InputError(f"{p}: missing from the data folder: {prepare_hint(rel)}")
    return p


def task_file(task: TaskSpec, split: str, data_dir: str | Path | None = None) -> Path:
    if split not in task.splits:
        raise InputError(f"task {task.name} has no {split!r} split (it has: {', '.join(task.splits)})")
    return _in_data_dir(task.splits[split], data_dir)


def prompts_file(task: TaskSpec, data_dir: str | Path | None = None) -> Path:
    return _in_data_dir(task.prompts, data_dir)


def load_questions_file(task: TaskSpec, path: str | Path) -> list[Question]:
    """Questions of a task file (``.json`` list or ``.jsonl``). A record without ``id`` gets its position, as in
    the paper's scripts; ids are strings everywhere in nat_ray."""
    out: list[Question] = []
    seen: dict[str, str] = {}
    for index, (where, rec) in enumerate(read_records(path)):
        for key in ("question", "answer"):
            if key not in rec:
                raise InputError(f"{where}: question record has no {key!r} key")
        if not isinstance(rec["question"], str):
            raise InputError(f"{where}: 'question' must be a string")
        qid = str(rec.get("id", index))
        if qid in seen:
            raise InputError(f"{where}: duplicate question id {qid!r} (first at {seen[qid]})")
        seen[qid] = where
        try:
            gt = task.ground_truth(rec["answer"])
        except ValueError as exc:
            raise InputError(f"{where}: field 'answer': {exc}") from None
        out.append(Question(id=qid, question=rec["question"], ground_truth=gt))
    return out


def load_questions(task: TaskSpec | str, split: str = "test", data_dir: str | Path | None = None) -> list[Question]:
    spec = get_task(task) if isinstance(task, str) else task
    return load_questions_file(spec, task_file(spec, split, data_dir))
