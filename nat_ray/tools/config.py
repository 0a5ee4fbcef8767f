"""The tools' config sections (``tools.calculator``, ``tools.search``) and the elastic pool size shared with the
env workers. Plain typed models; ``nat_ray.config.RunConfig`` holds them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from nat_ray.types import StrictModel
from nat_ray.urls import refuse_credentials


class PoolConfig(StrictModel):
    min: int = Field(1, ge=1)
    max: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _order(self) -> PoolConfig:
        if self.max < self.min:
            raise ValueError(f"pool max ({self.max}) is below min ({self.min})")
        return self


class CalculatorConfig(StrictModel):
    pool: PoolConfig = PoolConfig(min=1, max=2)
    timeout_s: float = Field(5.0, gt=0)
    target_inflight: int = Field(8, ge=1)  # calls in flight per actor above which the pool grows


class SerperConfig(StrictModel):
    url: str = "https://google.serper.dev/search"
    api_key_env: str = "SERPER_API_KEY"  # the key is read from this variable, never stored
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0)
    max_concurrency: int = Field(16, gt=0)  # requests in flight per search actor
    backoff_s: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _no_credentials(self) -> SerperConfig:
        refuse_credentials("url", self.url, f"the key belongs in the environment variable {self.api_key_env}")
        return self


class SearchIndexConfig(StrictModel):
    """The local backend's corpus and BM25 index (``nat-ray search build-index`` writes it, actors load it)."""

    path: str
    # strategyqa_test_explanations (opt-in): the StrategyQA test explanations, verdict removed, for offline eval
    sources: list[Literal["hotpotqa", "strategyqa", "strategyqa_test_explanations"]] = Field(
        default_factory=lambda: ["hotpotqa", "strategyqa"], min_length=1
    )
    stemmer: bool = True


class SearchConfig(StrictModel):
    """``search[query]``: ``local`` (BM25 over a built corpus) or ``serper`` (Google through the Serper API), ranked
    as in the paper — ``candidates`` from the backend, the ``embed_keep`` nearest by sentence embeddings, reranked
    by a DPR reader, ``keep`` shown. ``embed_model: null`` / ``rerank_model: null`` switch a stage off.
    ``replay`` answers each query with the observation recorded for it in a trajectories dataset: a scripted
    environment for orchestration tests and benchmarks, not a search engine."""

    kind: Literal["local", "serper", "replay"]
    replay_from: str | None = None
    index: SearchIndexConfig | None = None
    serper: SerperConfig = SerperConfig()
    candidates: int = Field(10, gt=0)
    embed_model: str | None = "mpnet"  # a prepared name (mpnet, minilm) or a sentence-transformers folder
    embed_keep: int = Field(5, gt=0)
    embed_memo: int = Field(20_000, ge=0)  # passage embeddings kept in memory per actor (0: off)
    rerank_model: str | None = None  # a transformers DPRReader folder
    keep: int = Field(3, gt=0)
    max_chars: int | None = Field(600, gt=10)  # per result in the observation
    cache: str | None = None  # the shared cache file; default <out>/search_cache.jsonl
    use_cache: bool = True
    pool: PoolConfig = PoolConfig(min=1, max=2)
    target_inflight: int = Field(16, ge=1)  # queries in flight per actor above which the pool grows
    max_batch_size: int = Field(32, gt=0)  # queries one actor ranks together
    batch_wait_ms: float = Field(5.0, ge=0)
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _kind_fields(self) -> SearchConfig:
        if self.kind == "replay" and not self.replay_from:
            raise ValueError("search kind 'replay' needs replay_from (a trajectories dataset)")
        if self.kind == "local" and self.index is None:
            raise ValueError("search kind 'local' needs index (path of the index `nat-ray search build-index` makes)")
        shown = self.embed_keep if self.embed_model else self.candidates
        if self.embed_model and self.embed_keep > self.candidates:
            raise ValueError(f"embed_keep ({self.embed_keep}) is above candidates ({self.candidates})")
        if self.keep > shown:
            raise ValueError(f"keep ({self.keep}) is above the passages left by the stage before ({shown})")
        return self


class ToolsConfig(StrictModel):
    calculator: CalculatorConfig = CalculatorConfig()
    search: SearchConfig | None = None
