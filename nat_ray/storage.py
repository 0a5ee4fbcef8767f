"""Reading and writing: JSON/JSONL with errors that name file and line, atomic outputs, trajectory datasets.

A trajectories dataset is a folder of Parquet files (``part-*.parquet``, schema
:data:`nat_ray.types.TRAJECTORY_ARROW_SCHEMA`) plus ``_manifest.json`` (schema version, the config that made it,
counts). Parquet readers, Ray Data's included, skip the ``_``-prefixed manifest. Every output is written to a
temporary sibling first and renamed into place, so a crash leaves either the old output or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from nat_ray.errors import InputError, first_validation_error
from nat_ray.records import MANIFEST, DatasetManifest, Record, StageManifest, dataset_manifest_path
from nat_ray.types import (
    EXAMPLE_ARROW_SCHEMA,
    TRAJECTORY_ARROW_SCHEMA,
    Example,
    Label,
    LabelledCompletion,
    PreferencePair,
    Trajectory,
)

if TYPE_CHECKING:
    import ray.data


# ---------------------------------------------------------------- JSON input


def parse_jsonl(lines: Iterable[str], name: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for each non-blank line; a malformed line raises naming ``name:line``."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None


def read_json_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None


def read_records(path: str | Path) -> list[tuple[str, dict]]:
    """Records of a ``.json`` list or a ``.jsonl`` file, each with its location (``file:line`` or ``file[i]``)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        try:
            with path.open(encoding="utf-8") as f:
                items = [(f"{path}:{n}", v) for n, v in parse_jsonl(f, str(path))]
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None
    else:
        data = read_json_file(path)
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        items = [(f"{path}[{i}]", v) for i, v in enumerate(data)]
    for where, value in items:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return items


# ---------------------------------------------------------------- atomic output


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` atomically, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` on success. An existing ``path`` is an error unless
    ``overwrite``; then it is swapped out only once the new one is complete."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output should get ordinary permissions
    try:
        yield tmp
        if path.exists():
            old = _tmp_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, value: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# ---------------------------------------------------------------- the run folder's records (nat_ray.records)

R = TypeVar("R", bound=BaseModel)


def _record_json(record: BaseModel) -> str:
    return record.model_dump_json(indent=2) + "\n"


def write_record(path: str | Path, record: Record | StageManifest) -> None:
    """Write a record atomically (a reader sees the old one or the new one, never half)."""
    with atomic_file(path) as tmp:
        tmp.write_text(_record_json(record), encoding="utf-8")


def read_record(path: str | Path, kind: type[R], missing_ok: bool = True) -> R | None:
    """The record at ``path`` as ``kind``; None when absent (``missing_ok``). A malformed one is an error naming
    the file and the field."""
    path = Path(path)
    if missing_ok and not path.exists():
        return None
    data = read_json_file(path)
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: not a {kind.__name__} record: {_first_error(exc)}") from None


def _write_manifest(folder: Path, meta: DatasetManifest) -> None:
    # inside a folder that atomic_dir() is about to rename into place: a plain write is enough
    (folder / MANIFEST).write_text(_record_json(meta), encoding="utf-8")


def manifest(kind: str, config: dict, counts: dict[str, int], **fields: Any) -> DatasetManifest:
    return DatasetManifest.new(kind=kind, config=config, counts=counts, **fields)


def dataset_manifest(path: str | Path) -> DatasetManifest | None:
    """The manifest of a dataset folder (``_manifest.json``) or a ``.jsonl`` file (``<file>.manifest.json``); None
    when it has none (or an unreadable one: the dataset is then treated as unknown, not trusted)."""
    try:
        return read_record(dataset_manifest_path(path), DatasetManifest)
    except InputError:
        return None


# ---------------------------------------------------------------- trajectories


def trajectories_table(trajectories: Iterable[Trajectory]) -> pa.Table:
    return pa.Table.from_pylist([t.to_row() for t in trajectories], schema=TRAJECTORY_ARROW_SCHEMA)


def write_trajectories(
    trajectories: list[Trajectory], out_dir: str | Path, meta: DatasetManifest | None = None, overwrite: bool = False
) -> None:
    """Write a trajectories dataset folder (one Parquet part, input order kept) and its manifest, atomically."""
    meta = meta or manifest("trajectories", {}, {"trajectories": len(trajectories)})
    with atomic_dir(out_dir, overwrite) as tmp:
        pq.write_table(trajectories_table(trajectories), tmp / "part-00000.parquet")
        _write_manifest(tmp, meta)


def parquet_parts(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such dataset folder")
    parts = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    if not parts:
        raise InputError(f"{path}: no Parquet files in this folder")
    return parts


def write_made_trajectories(
    made: list[Trajectory],
    left_out: dict[str, int],
    reasons: Sequence[str],
    out_dir: str | Path,
    config: dict,
    **counts: int,
) -> DatasetManifest:
    """Write trajectories made from sources (gold solutions, correct trajectories): the manifest counts them by label,
    and what was left out by each of ``reasons`` (``left_out_<reason>``, 0 where none was)."""
    labels = [t.label for t in made]
    counts = {"trajectories": len(made), "positive": labels.count(Label.POSITIVE),
              "negative": labels.count(Label.NEGATIVE), "error": 0, **counts,
              **{f"left_out_{r}": left_out.get(r, 0) for r in reasons}}  # fmt: skip
    meta = manifest("trajectories", config, counts)
    write_trajectories(made, out_dir, meta, overwrite=True)
    return meta


def read_trajectories(path: str | Path) -> list[Trajectory]:
    """All trajectories of a dataset folder, in order (parts sorted by name), each validated."""
    out: list[Trajectory] = []
    for part in parquet_parts(path):
        try:
            rows = pq.read_table(part).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{part}: not a readable Parquet file: {exc}") from None
        for i, row in enumerate(rows):
            out.append(_trajectory(row, f"{part} row {i}"))
    return out


def _trajectory(row: dict, where: str) -> Trajectory:
    try:
        return Trajectory.from_row(row)
    except (ValidationError, ValueError) as exc:
        raise InputError(f"{where}: not a valid trajectory: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    loc, msg = first_validation_error(exc)
    return f"field {loc}: {msg}" if isinstance(exc, ValidationError) else msg


def read_trajectories_jsonl(path: str | Path) -> list[Trajectory]:
    return [_trajectory(row, where) for where, row in read_records(path)]


def write_trajectories_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> int:
    return write_jsonl(path, (t.to_row() for t in trajectories))


def read_trajectories_ray(path: str | Path) -> ray.data.Dataset:
    """The dataset folder as a Ray Dataset (rows in the flat trajectory layout)."""
    import ray.data

    parts = parquet_parts(path)
    return ray.data.read_parquet([str(p) for p in parts], schema=TRAJECTORY_ARROW_SCHEMA)


def write_trajectories_ray(
    ds: ray.data.Dataset, out_dir: str | Path, meta: DatasetManifest, overwrite: bool = False
) -> None:
    """Write a Ray Dataset of trajectory rows as a trajectories dataset folder, atomically."""
    with atomic_dir(out_dir, overwrite) as tmp:
        ds.write_parquet(str(tmp), schema=TRAJECTORY_ARROW_SCHEMA)
        _write_manifest(tmp, meta)


# ---------------------------------------------------------------- training examples


def write_examples(
    examples: Sequence[Example | PreferencePair | LabelledCompletion],
    out: str | Path,
    meta: DatasetManifest,
    overwrite: bool = True,
) -> None:
    """``out`` ending ``.jsonl``: one JSON line per example (manifest at ``out.manifest.json``); else a Parquet
    dataset folder with the manifest inside. Preference records (DPO, KTO) are written the same way."""
    out = Path(out)
    rows = [e.model_dump(mode="json") for e in examples]
    if out.suffix == ".jsonl":
        write_jsonl(out, rows)
        write_record(dataset_manifest_path(out), meta)
        return
    sft = all(isinstance(e, Example) for e in examples)
    table = pa.Table.from_pylist(rows, schema=EXAMPLE_ARROW_SCHEMA if sft else None)
    with atomic_dir(out, overwrite) as tmp:
        pq.write_table(table, tmp / "part-00000.parquet")
        _write_manifest(tmp, meta)


def read_examples(path: str | Path) -> list[Example]:
    return read_training_rows(path, Example)  # type: ignore[return-value]


def read_training_rows(
    path: str | Path, kind: type[Example] | type[PreferencePair] | type[LabelledCompletion]
) -> list[Example | PreferencePair | LabelledCompletion]:
    """A training set's records, each validated as ``kind``; a bad one names its file and line (or row)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = read_records(path)
    else:
        rows = [(f"{p} row {i}", r) for p in parquet_parts(path) for i, r in enumerate(pq.read_table(p).to_pylist())]
    what = {Example: "training example", PreferencePair: "DPO pair", LabelledCompletion: "KTO record"}[kind]
    out = []
    for where, row in rows:
        try:
            out.append(kind.model_validate(row))
        except ValidationError as exc:
            raise InputError(f"{where}: not a valid {what}: {_first_error(exc)}") from None
    return out
