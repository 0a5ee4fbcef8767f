"""The ``search[query]`` tool: backends (``serper`` web, ``local`` BM25), the paper's ranking, a shared cache.

``build_pipeline(config)`` wires one from ``tools.search``; search actors (``actors/tools.py``) hold one each.
"""

from __future__ import annotations

from pathlib import Path

from nat_ray.tools.search.base import NO_RESULTS, Passage, SearchBackend, SearchBackendError, format_observation
from nat_ray.tools.search.pipeline import SearchPipeline


def _serper(cfg) -> SearchBackend:
    from nat_ray.tools.search.serper import Serper

    s = cfg.serper
    return Serper(s.url, s.api_key_env, s.timeout_s, s.max_retries, s.max_concurrency, s.backoff_s)


def _local(cfg) -> SearchBackend:
    from nat_ray.tools.search.local import LocalBM25

    return LocalBM25(cfg.index.path)


BACKENDS = {"serper": _serper, "local": _local}


def build_pipeline(cfg, cache_path: str | Path | None = None, device: str | None = None) -> SearchPipeline:
    """A pipeline from a ``SearchConfig`` (kind serper or local); ``cache_path`` None: no cache."""
    from nat_ray.errors import InputError
    from nat_ray.tools.search.rank import DPRReranker, EmbeddingFilter

    if cfg.kind not in BACKENDS:
        raise InputError(f"tools.search.kind {cfg.kind!r} is not a search backend (choose: {', '.join(BACKENDS)})")
    backend = BACKENDS[cfg.kind](cfg)
    embed = EmbeddingFilter(cfg.embed_model, cfg.embed_keep, device, memo=cfg.embed_memo) if cfg.embed_model else None
    rerank = DPRReranker(cfg.rerank_model, cfg.keep, device) if cfg.rerank_model else None
    pipeline = SearchPipeline(backend, cfg.candidates, embed, rerank, cfg.keep, cfg.max_chars)
    if cache_path is not None:
        pipeline.use_cache(str(cache_path))
    return pipeline


def search_queries(cfg, queries: list[str], cache_path: str | Path | None = None) -> tuple[list[str], dict]:
    """Observations for ``queries`` from a one-off pipeline (``nat-ray search query``, checks), and its stats."""
    import asyncio

    async def run() -> tuple[list[str], dict]:
        pipeline = build_pipeline(cfg, cache_path)
        try:
            return await pipeline.search(queries), pipeline.stats()
        finally:
            await pipeline.aclose()

    return asyncio.run(run())


__all__ = [
    "BACKENDS",
    "NO_RESULTS",
    "Passage",
    "SearchBackend",
    "SearchBackendError",
    "SearchPipeline",
    "build_pipeline",
    "format_observation",
    "search_queries",
]
