"""The rollout's output: Parquet parts written as results stream in, atomically, each episode exactly once.

On start it reads the parts already in the folder (a resumed run) to learn which episodes are done; results for an
episode already written are dropped. Parts are written to a temporary name and renamed, so a killed driver leaves
only whole parts; episodes that were in flight are simply run again on resume.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nat_ray.errors import InputError
from nat_ray.records import dataset_manifest_path
from nat_ray.storage import dataset_manifest, manifest, parquet_parts, write_record
from nat_ray.types import TRAJECTORY_ARROW_SCHEMA

Key = tuple[str, str, float, int]
_KEY_COLUMNS = ["task", "id", "temperature", "sample_index", "label"]


class TrajectoryWriter:
    def __init__(self, out_dir: str | Path, config: dict, identity: dict, flush_every: int = 256) -> None:
        self.out = Path(out_dir)
        self.config, self.identity, self.flush_every = config, identity, flush_every
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(".part-*.tmp*"):  # a part a killed run was writing
            stale.unlink()
        old = dataset_manifest(self.out)
        if old is not None:
            previous = old.identity
            if previous is not None and previous != identity:
                diff = [k for k in identity if previous.get(k) != identity.get(k)]
                raise InputError(
                    f"{self.out}: made by a run with other settings ({', '.join(diff)}); use a new output folder"
                )
        self.done: set[Key] = set()
        self.counts: Counter[str] = Counter()
        parts = parquet_parts(self.out) if any(self.out.glob("part-*.parquet")) else []
        for part in parts:
            for row in pq.read_table(part, columns=_KEY_COLUMNS).to_pylist():
                self.done.add((row["task"], row["id"], row["temperature"], row["sample_index"]))
                self.counts[row["label"]] += 1
        self.resumed = len(self.done)
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=-1)
        self._buffer: list[dict] = []
        self._save_manifest(complete=False)

    def add(self, table: pa.Table) -> int:
        """Buffer new episodes (dropping any already written); returns how many were new."""
        new = 0
        for row in table.to_pylist():
            key = (row["task"], row["id"], row["temperature"], row["sample_index"])
            if key in self.done:
                continue
            self.done.add(key)
            self.counts[row["label"]] += 1
            self._buffer.append(row)
            new += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()
        return new

    def flush(self) -> None:
        if not self._buffer:
            return
        path = self.out / f"part-{self._next:05d}.parquet"
        tmp = self.out / f".{path.name}.tmp{os.getpid()}"
        pq.write_table(pa.Table.from_pylist(self._buffer, schema=TRAJECTORY_ARROW_SCHEMA), tmp)
        os.replace(tmp, path)
        self._next += 1
        self._buffer = []

    def close(self, complete: bool) -> dict:
        self.flush()
        return self._save_manifest(complete)

    def _save_manifest(self, complete: bool) -> dict:
        counts = {
            "trajectories": len(self.done),
            **{k: self.counts.get(k, 0) for k in ("positive", "negative", "error")},
        }
        meta = manifest("trajectories", self.config, counts, identity=self.identity, complete=complete)
        write_record(dataset_manifest_path(self.out), meta)
        return meta.model_dump(mode="json")
