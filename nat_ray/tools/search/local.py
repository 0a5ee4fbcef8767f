"""The ``local`` backend: BM25 (bm25s) over a passage corpus on disk, built once and loaded by every search actor.

    nat-ray search build-index --config configs/rollout_hotpotqa_local.yaml

The corpus comes from the data folder: the HotpotQA distractor paragraphs (title + sentences; each title once) and
the StrategyQA train facts (one passage per fact), and, opt-in, the StrategyQA test explanations without their
verdict (``strategyqa_test_explanations``). The index folder holds ``passages.jsonl``, the bm25s index
(``bm25/``) and a ``_manifest.json`` with the build settings and counts; it is written atomically.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.records import MANIFEST, IndexManifest
from nat_ray.storage import atomic_dir, read_json_file, read_record, read_records, write_record
from nat_ray.tasks import resolve_data_dir
from nat_ray.tools.search.base import Passage, SearchBackendError

INDEX_FORMAT = 1
HOTPOTQA_FILES = [
    "hotpotqa_distractor/rpt_train.jsonl",
    "hotpotqa_distractor/rpt_dev.jsonl",
    "hotpotqa_distractor/rpt_test.jsonl",
    "hotpotqa_distractor/dev_first100.json",
]
STRATEGYQA_FILES = ["nat/dataset/strategyqa/train.jsonl"]


def _records(data_dir: Path, files: list[str], what: str) -> Iterator[tuple[str, dict]]:
    for name in files:
        path = data_dir / name
        if not path.exists():
            raise InputError(f"{path}: {what} file not found (data folder {data_dir})")
        yield from read_records(path)


def hotpotqa_paragraphs(data_dir: Path) -> Iterator[Passage]:
    seen: set[str] = set()
    for where, rec in _records(data_dir, HOTPOTQA_FILES, "HotpotQA distractor"):
        ctx = rec.get("context")
        if isinstance(ctx, dict):  # RPT layout: {"title": [...], "sentences": [[...], ...]}
            pairs = zip(ctx.get("title", []), ctx.get("sentences", []), strict=False)
        elif isinstance(ctx, list):  # HotpotQA's own layout: [[title, [sentences]], ...]
            pairs = ((c[0], c[1]) for c in ctx)
        else:
            raise InputError(f"{where}: field 'context': expected a mapping or a list of [title, sentences]")
        for title, sentences in pairs:
            if title in seen:  # the same Wikipedia paragraph appears in several questions' contexts
                continue
            seen.add(title)
            yield Passage(title=title, text="".join(sentences).strip(), link=f"hotpotqa:{title}")


def strategyqa_facts(data_dir: Path) -> Iterator[Passage]:
    seen: set[str] = set()
    for where, rec in _records(data_dir, STRATEGYQA_FILES, "StrategyQA train"):
        facts = rec.get("facts")
        if not isinstance(facts, list):
            raise InputError(f"{where}: field 'facts': expected a list of sentences")
        for i, fact in enumerate(facts):
            text = " ".join(str(fact).split())
            if text and text not in seen:
                seen.add(text)
                yield Passage(title="", text=text, link=f"strategyqa:{rec.get('id')}:{i}")


STRATEGYQA_TEST_FILES = ["nat/dataset/strategyqa/test_random_500.jsonl"]
_VERDICT = re.compile(r"^\s*(yes|no)\b[\s.,:;!]*", re.IGNORECASE)


def strategyqa_explanations(data_dir: Path) -> Iterator[Passage]:
    """The StrategyQA test questions' ``explanation`` with the leading "Yes." / "No." removed: a stand-in for what
    the web says about those questions (opt-in source ``strategyqa_test_explanations``; it is built from the eval
    questions themselves, so results with it are not comparable with web search)."""
    for where, rec in _records(data_dir, STRATEGYQA_TEST_FILES, "StrategyQA test"):
        explanation = rec.get("explanation")
        if not isinstance(explanation, str):
            raise InputError(f"{where}: field 'explanation': expected text")
        text = " ".join(_VERDICT.sub("", explanation, count=1).split())
        if text:
            yield Passage(title="", text=text, link=f"strategyqa-test:{rec.get('id')}")


SOURCES = {
    "hotpotqa": hotpotqa_paragraphs,
    "strategyqa": strategyqa_facts,
    "strategyqa_test_explanations": strategyqa_explanations,
}


def _tokenize(texts: list[str], stemmer: bool, ids: bool):
    import bm25s

    stem = None
    if stemmer:
        import Stemmer

        stem = Stemmer.Stemmer("english")
    return bm25s.tokenize(texts, stopwords="en", stemmer=stem, return_ids=ids, show_progress=False)


def build_index(out: str | Path, sources: list[str], stemmer: bool = True, data_dir: str | Path | None = None) -> dict:
    """Build the corpus and its BM25 index at ``out`` (replacing an older one atomically); returns the manifest."""
    import bm25s

    root = resolve_data_dir(data_dir)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise InputError(f"index sources {unknown or '[]'}: choose from {', '.join(SOURCES)}")
    passages: list[Passage] = []
    counts: dict[str, int] = {}
    for source in sources:
        before = len(passages)
        passages.extend(SOURCES[source](root))
        counts[source] = len(passages) - before
    retriever = bm25s.BM25()
    retriever.index(_tokenize([f"{p.title} {p.text}" for p in passages], stemmer, ids=True), show_progress=False)
    digest = hashlib.sha256()
    for p in passages:
        digest.update(json.dumps([p.title, p.text, p.link]).encode())
    manifest = IndexManifest.new(
        config={"sources": sources, "stemmer": stemmer},
        format=INDEX_FORMAT,
        sources=sources,
        counts=counts,
        passages=len(passages),
        stemmer=stemmer,
        data_dir=str(root),
        fingerprint=digest.hexdigest()[:16] + ("-stem" if stemmer else ""),
    )
    with atomic_dir(Path(out), overwrite=True) as tmp:
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps({"id": p.link, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n")
        retriever.save(str(tmp / "bm25"), show_progress=False)
        write_record(tmp / MANIFEST, manifest)
    return manifest


def read_index_manifest(path: str | Path) -> IndexManifest:
    manifest = Path(path) / MANIFEST
    if not manifest.exists():
        raise InputError(
            f"search index {path} does not exist (or is incomplete): build it with "
            "`nat-ray search build-index --config FILE`"
        )
    fmt = read_json_file(manifest).get("format")
    if fmt != INDEX_FORMAT:
        raise InputError(f"{manifest}: index format {fmt}, this nat_ray reads {INDEX_FORMAT}: rebuild it")
    return read_record(manifest, IndexManifest, missing_ok=False)  # type: ignore[return-value]


class LocalBM25:
    """BM25 candidates from a built index; passages with a zero score (no query term in common) are not returned."""

    name = "local"

    def __init__(self, path: str | Path) -> None:
        import bm25s

        self.path = Path(path)
        self.manifest = read_index_manifest(self.path)
        self.retriever = bm25s.BM25.load(str(self.path / "bm25"), mmap=True, show_progress=False)
        self.passages: list[Passage] = []
        for _, rec in read_records(self.path / "passages.jsonl"):
            self.passages.append(Passage(title=rec["title"], text=rec["text"], link=rec["id"]))

    def fingerprint(self) -> str:
        return f"local:{self.manifest.fingerprint}"

    def retrieve_sync(self, queries: list[str], k: int) -> list[list[Passage]]:
        tokens = _tokenize(queries, self.manifest.stemmer, ids=False)
        vocab = self.retriever.vocab_dict
        known = [[t for t in q if t in vocab] for q in tokens]
        out: list[list[Passage]] = [[] for _ in queries]
        asked = [i for i, q in enumerate(known) if q]  # a query with no indexed term has no candidates
        if asked:
            k = min(k, len(self.passages))
            docs, scores = self.retriever.retrieve([known[i] for i in asked], k=k, show_progress=False)
            for row, i in enumerate(asked):
                out[i] = [self.passages[d] for d, s in zip(docs[row], scores[row], strict=True) if s > 0]
        return out

    async def retrieve(self, queries: list[str], k: int) -> list[list[Passage] | SearchBackendError]:
        return list(await asyncio.to_thread(self.retrieve_sync, queries, k))

    async def aclose(self) -> None:
        pass
