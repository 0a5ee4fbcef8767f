"""A persistent query -> observation cache shared by every search actor and process (the paper kept a JSONL file
under a file lock; so does this).

One JSON line per entry, ``{"ns", "q", "obs"}``; ``ns`` is the search pipeline's fingerprint (backend, index, models,
stage sizes), so one file can serve several configurations without mixing their answers. Writers append whole lines
under an exclusive lock, after re-reading what other processes appended (an entry is written once); readers read
without the lock and only consume complete lines. A line torn by a crashed writer is isolated by the next writer (it
starts a new line) and skipped (counted as ``corrupt``); no entry is lost or duplicated.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


class SearchCache:
    def __init__(self, path: str | Path, namespace: str, lock_timeout_s: float = 120.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)
        self.entries: dict[str, str] = {}
        self._offset = 0
        self.hits = self.misses = self.written = self.corrupt = self.skipped_writes = 0
        self.refresh()

    def refresh(self) -> None:
        """Read the complete lines appended since the last read (by this or any other process)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        end = data.rfind(b"\n") + 1  # a line still being written (or torn) waits until it is complete
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                ns, query, obs = rec["ns"], rec["q"], rec["obs"]
            except (ValueError, KeyError, TypeError):
                self.corrupt += 1
                continue
            if ns == self.namespace:
                self.entries.setdefault(query, obs)
        self._offset += end

    def get_many(self, queries: list[str]) -> dict[str, str]:
        if any(q not in self.entries for q in queries):
            self.refresh()  # another actor may have answered it since
        found = {q: self.entries[q] for q in queries if q in self.entries}
        self.hits += len(found)
        self.misses += len(queries) - len(found)
        return found

    def put_many(self, items: dict[str, str]) -> None:
        try:
            with self.lock:
                self.refresh()
                new = {q: o for q, o in items.items() if q not in self.entries}
                if not new:
                    return
                data = "".join(
                    json.dumps({"ns": self.namespace, "q": q, "obs": o}, ensure_ascii=False) + "\n"
                    for q, o in new.items()
                ).encode("utf-8")
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        data = b"\n" + data  # a crashed writer's partial line stays on a line of its own
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.entries.update(new)
                self.written += len(new)
        except Timeout:
            # the answers are still returned; only their persistence is skipped
            self.skipped_writes += len(items)
            log.warning(
                "search cache %s: lock busy for %ss, %d entries not saved", self.path, self.lock.timeout, len(items)
            )

    def stats(self) -> dict:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "written": self.written,
            "entries": len(self.entries),
            "corrupt_lines": self.corrupt,
            "skipped_writes": self.skipped_writes,
        }
