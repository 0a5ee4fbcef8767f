"""The report's "Where it ran" section: each row's training and eval precision and the machines its stages ran on.

A study's stages can run on different machines (a resumed run, a run folder copied to the next session's machine),
and the same config trains and decodes in bfloat16 on a CPU with AVX512-BF16 or AMX and in float32 on one without
(``train.bf16: auto``, ``policy.dtype: auto``). Paired differences between rows computed in different arithmetic
mix the method with the number format, so the section says so above its table when they do.
"""

from __future__ import annotations

from pathlib import Path

from nat_ray.records import TRAIN_RECORD, EvalMetrics, RunLayout, TrainingRecord, read_stage
from nat_ray.storage import read_record

UNKNOWN = "not recorded"


def _first_word(text: str | None) -> str:
    """``bfloat16 (policy.dtype: auto -> …)`` -> ``bfloat16``: every engine's ``precision()`` names its dtype first."""
    return text.split(" ", 1)[0] if text else UNKNOWN


def _machines(run: Path, name: str) -> list[str]:
    """The CPUs the row's train, eval and held-out stages recorded, in that order, each once."""
    layout = RunLayout(run)
    seen: list[str] = []
    for folder in (layout.model(name), layout.eval_dir(name), layout.heldout_dir(name)):
        stage = read_stage(folder)
        cpu = (stage.machine or {}).get("cpu") if stage is not None else None
        if cpu and cpu not in seen:
            seen.append(cpu)
    return seen


def where_rows(run: Path, rows: dict[str, EvalMetrics]) -> list[dict[str, str]]:
    """Per report row: ``name``, ``trained`` (train precision; ``-`` for base and teacher), ``evaluated`` (the eval's
    engines' precision) and ``machines`` (its stages' CPUs, else the machine its ``metrics.json`` names: an eval run
    outside a pipeline)."""
    out = []
    for name, metrics in rows.items():
        record = read_record(RunLayout(run).model(name) / TRAIN_RECORD, TrainingRecord)
        trained = "-" if name in ("base", "teacher") else record.precision if record and record.precision else UNKNOWN
        evaluated = "-" if name == "teacher" else _first_word(metrics.run.get("precision"))
        machines = _machines(run, name) or ([metrics.run["machine"]["cpu"]] if metrics.run.get("machine") else [])
        where = ", ".join(machines) or UNKNOWN
        out.append({"name": name, "trained": trained, "evaluated": evaluated, "machines": where})
    return out


def mixed(table: list[dict[str, str]]) -> list[str]:
    """What the rows do not share: "training precision (…)", "eval precision (…)" — unrecorded values left out."""
    said = []
    for key, what in (("trained", "training precision"), ("evaluated", "eval precision")):
        values = sorted({r[key] for r in table if r[key] not in ("-", UNKNOWN)})
        if len(values) > 1:
            said.append(f"{what} ({', '.join(values)})")
    return said


def where_section(run: Path, rows: dict[str, EvalMetrics]) -> list[str]:
    """The report's lines: a warning when the rows mix precisions, then the table."""
    table = where_rows(run, rows)
    lines = ["## Where it ran", ""]
    if differ := mixed(table):
        lines += [
            f"**The rows were not computed in one arithmetic**: they differ in {' and '.join(differ)}; a paired "
            "difference between rows of different precision measures the number format with the method.",
            "",
        ]
    lines += ["| row | trained in | evaluated in | machine (the stages' CPUs) |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['trained']} | {r['evaluated']} | {r['machines']} |" for r in table]
    return [*lines, ""]
