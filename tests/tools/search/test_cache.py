"""The shared search cache: concurrent writers in several processes, restarts, torn lines, namespaces."""

from __future__ import annotations

import json
import multiprocessing as mp
from collections import Counter
from pathlib import Path

from nat_ray.tools.search.cache import SearchCache


def _writer(path: str, worker: int, n: int, overlap: int) -> None:
    cache = SearchCache(path, "ns")
    for start in range(0, n, 5):
        # each worker writes its own queries and `overlap` shared ones; batches of 5 interleave with the others
        batch = {f"w{worker}-q{i}": f"obs w{worker} {i}" for i in range(start, start + 5)}
        batch.update({f"shared-{i}": f"obs shared {i}" for i in range(start, min(start + 5, overlap))})
        cache.get_many(list(batch))
        cache.put_many(batch)


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    workers, n, overlap = 4, 100, 40
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, n, overlap)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    counts = Counter(r["q"] for r in records)
    expected = {f"w{w}-q{i}" for w in range(workers) for i in range(n)} | {f"shared-{i}" for i in range(overlap)}
    assert set(counts) == expected and max(counts.values()) == 1  # nothing lost, nothing written twice
    reread = SearchCache(path, "ns")
    assert len(reread.entries) == len(expected) and reread.corrupt == 0
    assert reread.entries["w3-q99"] == "obs w3 99" and reread.entries["shared-7"] == "obs shared 7"


def test_entries_survive_a_restart_and_count_hits(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    first = SearchCache(path, "ns")
    assert first.get_many(["a", "b"]) == {}
    first.put_many({"a": "A", "b": "B"})
    second = SearchCache(path, "ns")  # a new process, a restarted run
    assert second.get_many(["a", "b", "c"]) == {"a": "A", "b": "B"}
    assert second.stats() | {} == {
        "hits": 2,
        "misses": 1,
        "written": 0,
        "entries": 2,
        "corrupt_lines": 0,
        "skipped_writes": 0,
    }


def test_an_entry_written_by_another_process_is_seen_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    reader, writer = SearchCache(path, "ns"), SearchCache(path, "ns")
    assert reader.get_many(["q"]) == {}
    writer.put_many({"q": "from the other actor"})
    assert reader.get_many(["q"]) == {"q": "from the other actor"}
    reader.put_many({"q": "a second answer"})  # already there: not written again
    assert path.read_text().count('"q": "q"') == 1


def test_a_line_torn_by_a_crash_is_isolated(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    SearchCache(path, "ns").put_many({"before": "ok"})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"ns": "ns", "q": "half", "ob')  # a writer killed mid-line
    cache = SearchCache(path, "ns")
    assert cache.get_many(["before"]) == {"before": "ok"}
    cache.put_many({"after": "fine"})
    again = SearchCache(path, "ns")
    assert again.entries == {"before": "ok", "after": "fine"} and again.corrupt == 1


def test_namespaces_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    SearchCache(path, "mpnet-config").put_many({"q": "ranked by mpnet"})
    other = SearchCache(path, "minilm-config")
    assert other.get_many(["q"]) == {}
    other.put_many({"q": "ranked by minilm"})
    assert SearchCache(path, "mpnet-config").entries == {"q": "ranked by mpnet"}
    assert SearchCache(path, "minilm-config").entries == {"q": "ranked by minilm"}
