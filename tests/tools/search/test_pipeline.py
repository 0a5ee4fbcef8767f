"""The search pipeline over the local corpus: BM25 candidates, the embedding filter, the DPR rerank, the format."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from nat_ray.errors import InputError
from nat_ray.tools.search.base import NO_RESULTS, Passage, format_observation
from nat_ray.tools.search.local import LocalBM25, build_index, read_index_manifest
from nat_ray.tools.search.pipeline import SearchPipeline
from nat_ray.tools.search.rank import DPRReranker, EmbeddingFilter

TINTED = 'The band who released the debut album "Tinted Windows" had their first performance in what city?'


def _run(pipeline: SearchPipeline, queries: list[str]) -> list[str]:
    return asyncio.run(pipeline.search(queries))


def test_index_holds_both_sources(search_index: Path) -> None:
    meta = read_index_manifest(search_index)
    assert meta.counts["hotpotqa"] > 11000 and meta.counts["strategyqa"] > 3000
    backend = LocalBM25(search_index)
    assert len(backend.passages) == meta.passages
    (tinted, khan, nothing) = backend.retrieve_sync([TINTED, "Genghis Khan children", "the of and"], 10)
    assert len(tinted) == 10 and {"Tinted Windows (band)", "Tinted Windows (album)"} <= {p.title for p in tinted[:3]}
    assert "Genghis Khan had sixteen children." in [p.text for p in khan]
    assert nothing == []  # stopwords only: no candidates rather than arbitrary ones


def test_observation_format_is_the_papers() -> None:
    passages = [Passage("A", "first  passage\nsplit"), Passage("", "second"), Passage("C", "x" * 50)]
    assert format_observation(passages, max_chars=20) == " #1: A: first passage... #2: second #3: C: xxxxxxxxxxxxxx..."
    assert format_observation([]) == NO_RESULTS


def test_bm25_only(search_index: Path) -> None:
    pipeline = SearchPipeline(LocalBM25(search_index), candidates=10, keep=3)
    (obs,) = _run(pipeline, [TINTED])
    top = LocalBM25(search_index).retrieve_sync([TINTED], 3)[0]
    assert obs == format_observation(top)
    assert obs.startswith(" #1: ") and " #2: " in obs and " #3: " in obs and " #4: " not in obs


def test_embedding_filter_orders_by_cosine(search_index: Path, minilm: Path) -> None:
    from sentence_transformers import SentenceTransformer

    backend = LocalBM25(search_index)
    embed = EmbeddingFilter(str(minilm), keep=5)
    pipeline = SearchPipeline(backend, candidates=10, embed=embed, keep=3)
    query = "Genghis Khan children"
    (obs,) = _run(pipeline, [query])
    cands = backend.retrieve_sync([query], 10)[0]
    model = SentenceTransformer(str(minilm), device="cpu")
    q = model.encode([query], normalize_embeddings=True, convert_to_tensor=True)[0]
    c = model.encode([p.render() for p in cands], normalize_embeddings=True, convert_to_tensor=True)
    best = torch.argsort(c @ q, descending=True)[:3].tolist()
    assert obs == format_observation([cands[i] for i in best])


def test_passage_embeddings_are_reused_not_recomputed(search_index: Path, minilm: Path) -> None:
    backend = LocalBM25(search_index)
    queries = ["Genghis Khan children", "How many children did Genghis Khan have?", "Julius Caesar children"]
    cands = backend.retrieve_sync(queries, 10)
    memo, plain = EmbeddingFilter(str(minilm), keep=5, memo=10_000), EmbeddingFilter(str(minilm), keep=5, memo=0)
    first = memo.select(queries[:1], cands[:1])
    assert (memo.encoded, memo.reused) == (10, 0)
    both = memo.select(queries, cands)  # overlapping candidates: only the new passages are encoded
    shared = len({p.render() for p in cands[0]} | {p.render() for c in cands[1:] for p in c})
    assert memo.encoded == shared and memo.reused == 30 - (shared - 10)
    assert both == plain.select(queries, cands) and both[0] == first[0]  # same ranking as encoding afresh
    assert plain.encoded == len({p.render() for c in cands for p in c}) and not plain._memo
    small = EmbeddingFilter(str(minilm), keep=5, memo=4)
    small.select(queries, cands)
    assert len(small._memo) == 4  # bounded: least recently used out


def test_dpr_rerank_orders_by_relevance_logits(search_index: Path, minilm: Path, tiny_dpr: Path) -> None:
    from transformers import DPRReader, DPRReaderTokenizerFast

    backend = LocalBM25(search_index)
    embed = EmbeddingFilter(str(minilm), keep=5)
    rerank = DPRReranker(str(tiny_dpr), keep=3)
    pipeline = SearchPipeline(backend, candidates=10, embed=embed, rerank=rerank, keep=3)
    (obs,) = _run(pipeline, [TINTED])
    five = embed.select([TINTED], backend.retrieve_sync([TINTED], 10))[0]
    tok = DPRReaderTokenizerFast.from_pretrained(str(tiny_dpr))
    reader = DPRReader.from_pretrained(str(tiny_dpr)).eval()
    enc = tok(
        questions=TINTED,
        titles=[p.title for p in five],
        texts=[p.text for p in five],
        padding=True,
        truncation=True,
        max_length=256,
        return_tensors="pt",
    )
    with torch.inference_mode():
        logits = reader(**enc).relevance_logits
    best = torch.argsort(logits, descending=True)[:3].tolist()
    assert obs == format_observation([five[i] for i in best])


def test_batch_answers_equal_single_answers(search_index: Path, minilm: Path) -> None:
    pipeline = SearchPipeline(LocalBM25(search_index), embed=EmbeddingFilter(str(minilm), keep=5), keep=3)
    queries = [TINTED, "Genghis Khan children", "Julius Caesar", "", "zzzzqqq"]
    together = _run(pipeline, queries)
    alone = [_run(pipeline, [q])[0] for q in queries]
    assert together == alone
    assert together[3] == "Error: empty search query." and together[4] == NO_RESULTS


def test_cache_answers_the_second_time(tmp_path: Path, search_index: Path) -> None:
    pipeline = SearchPipeline(LocalBM25(search_index), keep=3)
    cache = pipeline.use_cache(str(tmp_path / "cache.jsonl"))
    first = _run(pipeline, ["Julius Caesar", "Julius  Caesar "])  # the same query once normalised
    assert cache.stats()["misses"] == 1 and cache.stats()["written"] == 1
    again = SearchPipeline(LocalBM25(search_index), keep=3)
    again.use_cache(str(tmp_path / "cache.jsonl"))
    assert _run(again, ["Julius Caesar"]) == first[:1] and again.cache.stats()["hits"] == 1


def test_fingerprint_follows_the_stages(search_index: Path, minilm: Path) -> None:
    backend = LocalBM25(search_index)
    a = SearchPipeline(backend, keep=3).fingerprint()
    b = SearchPipeline(backend, embed=EmbeddingFilter(str(minilm), keep=5), keep=3).fingerprint()
    c = SearchPipeline(backend, keep=2).fingerprint()
    assert len({a, b, c}) == 3


def test_missing_models_and_index_say_how_to_prepare(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NAT_RAY_MODELS_DIR", str(tmp_path / "no-models"))
    with pytest.raises(InputError, match="nat-ray models prepare mpnet"):
        EmbeddingFilter("mpnet", keep=5)
    with pytest.raises(InputError, match=r"tools.search.rerank_model: model folder .*does not exist"):
        DPRReranker(str(tmp_path / "dpr"), keep=3)
    with pytest.raises(InputError, match="nat-ray search build-index"):
        LocalBM25(tmp_path / "index")


def test_not_a_dpr_folder_is_a_clear_error(minilm: Path) -> None:
    with pytest.raises(InputError, match="not a DPR reader folder"):
        DPRReranker(str(minilm), keep=3)


def test_bad_corpus_file_names_the_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "nat").mkdir(parents=True)
    (data / "hotpotqa_distractor").mkdir()
    for name in ("rpt_train.jsonl", "rpt_dev.jsonl", "rpt_test.jsonl"):
        (data / "hotpotqa_distractor" / name).write_text('{"context": {"title": ["T"], "sentences": [["s."]]}}\n')
    (data / "hotpotqa_distractor/dev_first100.json").write_text('[{"context": 5}]')
    with pytest.raises(InputError, match=r"dev_first100.json.*context"):
        build_index(tmp_path / "idx", ["hotpotqa"], data_dir=data)
    assert not (tmp_path / "idx").exists()
