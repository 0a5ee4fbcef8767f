"""The search tool as the paper ran it: candidates from a backend, the nearest by sentence embeddings, reranked by a
DPR reader, formatted as `` #1: … #2: … #3: …`` — with a shared cache in front, over a batch of queries at once."""

from __future__ import annotations

import asyncio
import hashlib
import time

from nat_ray.tools.search.base import Passage, SearchBackend, SearchBackendError, format_observation
from nat_ray.tools.search.cache import SearchCache
from nat_ray.tools.search.rank import DPRReranker, EmbeddingFilter


def normalize_query(query: str) -> str:
    return " ".join(query.split())


class SearchPipeline:
    def __init__(
        self,
        backend: SearchBackend,
        candidates: int = 10,
        embed: EmbeddingFilter | None = None,
        rerank: DPRReranker | None = None,
        keep: int = 3,
        max_chars: int | None = None,
    ) -> None:
        self.backend, self.embed, self.rerank = backend, embed, rerank
        self.candidates, self.keep, self.max_chars = candidates, keep, max_chars
        self.cache: SearchCache | None = None
        self.queries = self.errors = 0
        self.seconds = 0.0

    def fingerprint(self) -> str:
        """Everything that changes the observation for a query: the cache namespace."""
        parts = [
            self.backend.fingerprint(),
            f"k={self.candidates}",
            f"embed={self.embed.path.name}:{self.embed.keep}" if self.embed else "embed=off",
            f"rerank={self.rerank.path.name}:{self.rerank.keep}" if self.rerank else "rerank=off",
            f"keep={self.keep}",
            f"chars={self.max_chars}",
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def use_cache(self, path: str) -> SearchCache:
        self.cache = SearchCache(path, self.fingerprint())
        return self.cache

    def rank(self, queries: list[str], candidates: list[list[Passage]]) -> list[list[Passage]]:
        """The ranking stages that are on, then the first ``keep``; blocking (model forward passes)."""
        ranked = candidates
        if self.embed is not None:
            ranked = self.embed.select(queries, ranked)
        if self.rerank is not None:
            ranked = self.rerank.select(queries, ranked)
        return [r[: self.keep] for r in ranked]

    def cached(self, query: str) -> str | None:
        """The cached observation for a query, or None: a hit need not wait for a batch to form."""
        if self.cache is None:
            return None
        q = normalize_query(query)
        if q not in self.cache.entries:
            return None
        self.queries += 1
        return self.cache.get_many([q])[q]

    async def search(self, queries: list[str]) -> list[str]:
        """One observation per query. Never raises for a query's own failure: that query's observation is
        ``Error: …`` (errors are not cached, so the query is tried again next time)."""
        started = time.monotonic()
        wanted = [normalize_query(q) for q in queries]
        answers: dict[str, str] = {"": "Error: empty search query."}
        asked = sorted({q for q in wanted if q})
        if self.cache is not None and asked:
            answers.update(self.cache.get_many(asked))
        todo = [q for q in asked if q not in answers]
        if todo:
            results = await self.backend.retrieve(todo, self.candidates)
            ok = [(q, r) for q, r in zip(todo, results, strict=True) if not isinstance(r, SearchBackendError)]
            for q, r in zip(todo, results, strict=True):
                if isinstance(r, SearchBackendError):
                    answers[q] = f"Error: {r}"
                    self.errors += 1
            if ok:
                ranked = await asyncio.to_thread(self.rank, [q for q, _ in ok], [r for _, r in ok])
                fresh = {q: format_observation(r, self.max_chars) for (q, _), r in zip(ok, ranked, strict=True)}
                answers.update(fresh)
                if self.cache is not None:
                    await asyncio.to_thread(self.cache.put_many, fresh)
        self.queries += len(queries)
        self.seconds += time.monotonic() - started
        return [answers[q] for q in wanted]

    def stats(self) -> dict:
        out = {"queries": self.queries, "errors": self.errors, "seconds": round(self.seconds, 3)}
        if self.embed is not None:
            out["passages_encoded"], out["passage_embeddings_reused"] = self.embed.encoded, self.embed.reused
        if self.cache is not None:
            out["cache"] = self.cache.stats()
        return out

    async def aclose(self) -> None:
        await self.backend.aclose()
