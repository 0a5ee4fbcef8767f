"""A run folder mirrored to object storage (any ``pyarrow.fs`` URI: ``s3://``, ``gs://``, ``hdfs://``, ``file://``).

The pipeline works in its local ``out`` (fast, atomic renames) and, with ``storage:`` set, uploads each stage's folder
when the stage completes. A pipeline started where ``out`` lacks stages the mirror holds (a new head after the old
one was lost, another machine) downloads them first, so finished stages are skipped, not redone.

A stage is in the mirror only when its ``_stage.json`` is: uploads send it last and delete it first, so a crash
mid-upload leaves a folder without a manifest, which is ignored. A stage still running is not mirrored; it is
resumed from the local ``out`` if that survives, else run again.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.records import STAGE_FILE, read_stage


class StageMirror:
    def __init__(self, out: Path, uri: str) -> None:
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            self.fs, base = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, ValueError, OSError) as exc:
            raise InputError(f"storage: {uri!r} is not a URI pyarrow.fs can open: {exc}") from None
        self.out, self.uri, self.base = out, uri, base.rstrip("/")

    def _remote(self, folder: Path) -> str:
        return f"{self.base}/{folder.resolve().relative_to(self.out.resolve()).as_posix()}"

    def push(self, folder: Path) -> None:
        """Upload one completed stage folder, replacing what the mirror held for it."""
        import pyarrow.fs as pafs

        remote = self._remote(folder)
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(f"{remote}/{STAGE_FILE}")
        self.fs.create_dir(remote, recursive=True)
        self.fs.delete_dir_contents(remote, missing_dir_ok=True)
        local = pafs.LocalFileSystem()
        for item in sorted(folder.iterdir()):
            if item.name == STAGE_FILE:
                continue
            target = f"{remote}/{item.name}"
            if item.is_dir():
                self.fs.create_dir(target, recursive=True)
            pafs.copy_files(str(item), target, source_filesystem=local, destination_filesystem=self.fs)
        pafs.copy_files(
            str(folder / STAGE_FILE), f"{remote}/{STAGE_FILE}", source_filesystem=local, destination_filesystem=self.fs
        )

    def stages(self) -> list[str]:
        """The mirrored stage folders (relative to ``out``) that have a manifest."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.base)
        if info.type == pafs.FileType.NotFound:
            return []
        found = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True))
        marker = f"/{STAGE_FILE}"
        return sorted(f.path[len(self.base) + 1 : -len(marker)] for f in found if f.path.endswith(marker))

    def has(self, folder: Path) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(f"{self._remote(folder)}/{STAGE_FILE}").type != pafs.FileType.NotFound

    def pull(self) -> list[str]:
        """Download every mirrored stage that ``out`` does not hold complete; returns what was downloaded."""
        import pyarrow.fs as pafs

        pulled = []
        for rel in self.stages():
            local = read_stage(self.out / rel)
            if local is not None and local.complete:
                continue
            target = self.out / rel
            tmp = target.with_name(f".{target.name}.pull")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            pafs.copy_files(
                f"{self.base}/{rel}", str(tmp), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem()
            )
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            pulled.append(rel)
        return pulled
