"""The search tool: retrieval quality of each ranking stage, actor throughput with and without batching, cache hits.

    python benchmarks/search.py [--quick] [--json PATH] [--dpr DPR_READER_DIR] [--index DIR] [--data-dir DIR]
                                [--throughput-model minilm|mpnet] [--rounds N]

Workload: the 300 HotpotQA questions of ``hotpotqa_distractor/rpt_dev.jsonl`` (``--quick``: 4), each question as
the query, over the local corpus (HotpotQA distractor paragraphs + StrategyQA facts, ~15k passages; built in a
temporary folder unless ``--index`` is given).

1. ``recall_at_3``: the share of a question's supporting-fact paragraphs (by title) among the 3 passages shown, for
   BM25 alone (its top 3), BM25 + MiniLM and BM25 + MPNet (10 BM25 candidates, the 5 nearest by cosine, first 3),
   and BM25 + MPNet + DPR when ``--dpr`` gives reader weights. ``recall_at_10_bm25`` bounds what reranking can reach.
2. Queries/s of one search actor (``actors.tools.SearchActor``, in-process: the same batching and pipeline code Ray
   runs, without the RPC), 32 queries in flight, ``max_batch_size`` 32 vs 1 in interleaved rounds; the embedding
   model is ``--throughput-model`` (default minilm: MPNet on 2 CPU cores ranks ~0.3 queries/s, too slow for rounds).
3. The passage-embedding memo on a real agent workload: the search queries GPT-3.5 issued in the shipped StrategyQA
   trajectories (in file order; ``--quick``: 24, else 240), one actor with the memo vs one without (each cold),
   queries/s and the share of passage embeddings reused.
4. Cache-hit latency through the actor (p50/p99), next to the miss latency of one lone query.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.tools import SearchActor
from nat_ray.models import prepare
from nat_ray.react import parse_reply
from nat_ray.storage import read_records, write_json
from nat_ray.tasks import resolve_data_dir
from nat_ray.tools.config import SearchConfig
from nat_ray.tools.search.local import LocalBM25, build_index
from nat_ray.tools.search.pipeline import SearchPipeline
from nat_ray.tools.search.rank import DPRReranker, EmbeddingFilter


def load_questions(data_dir: Path, n: int | None) -> list[tuple[str, set[str]]]:
    rows = [rec for _, rec in read_records(data_dir / "hotpotqa_distractor/rpt_dev.jsonl")]
    return [(r["question"], set(r["supporting_facts"]["title"])) for r in rows[:n]]


def agent_queries(data_dir: Path, n: int) -> list[str]:
    """Search queries a real agent made: GPT-3.5's search actions in the shipped StrategyQA trajectories."""
    path = data_dir / "nat/dataset/strategyqa/strategyqa_gpt-3.5_positive.json"
    out = []
    for _, rec in read_records(path):
        for turn in rec["conversations"]:
            action = parse_reply(turn["content"]) if turn["role"] == "assistant" else None
            if action is not None and action.type == "search" and action.argument.strip():
                out.append(action.argument)
    return out[:n]


def recall(shown: list[list], gold: list[set[str]]) -> float:
    return statistics.mean(len({p.title for p in s} & g) / len(g) for s, g in zip(shown, gold, strict=True))


def quality(backend: LocalBM25, questions, stages: dict[str, SearchPipeline], batch: int = 32) -> dict:
    queries, gold = [q for q, _ in questions], [g for _, g in questions]
    candidates = []
    for i in range(0, len(queries), batch):
        candidates += backend.retrieve_sync(queries[i : i + batch], 10)
    out = {"bm25": recall([c[:3] for c in candidates], gold)}
    for name, pipeline in stages.items():
        shown, started = [], time.perf_counter()
        for i in range(0, len(queries), batch):
            shown += pipeline.rank(queries[i : i + batch], candidates[i : i + batch])
        out[name] = recall(shown, gold)
        print(f"  {name:<16} recall@3 {out[name]:.3f}  ({time.perf_counter() - started:.1f} s)")
    return {
        "recall_at_3": {k: round(v, 4) for k, v in out.items()},
        "recall_at_10_bm25": round(recall(candidates, gold), 4),
    }


async def throughput(actor: SearchActor, queries: list[str], inflight: int = 32) -> float:
    slots = asyncio.Semaphore(inflight)

    async def one(q: str) -> None:
        async with slots:
            await actor.run(q)

    started = time.perf_counter()
    await asyncio.gather(*(one(q) for q in queries))
    return len(queries) / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--dpr", help="a transformers DPRReader folder: adds bm25+mpnet+dpr")
    ap.add_argument("--index", type=Path, help="a built index (default: build one in a temporary folder)")
    ap.add_argument("--data-dir")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved throughput rounds (default 3, quick 1)")
    ap.add_argument("--throughput-model", choices=["minilm", "mpnet"], default="minilm")
    args = ap.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    questions = load_questions(data_dir, 4 if args.quick else None)  # quick: MPNet on 2 float32 cores ~10 s/question
    rounds = args.rounds or (1 if args.quick else 3)
    mpnet, minilm = prepare("mpnet"), prepare("minilm")
    result: dict = {"questions": len(questions), "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index or Path(tmp) / "index"
        if args.index is None:
            started = time.perf_counter()
            meta = build_index(index, ["hotpotqa", "strategyqa"], data_dir=data_dir)
            result["index"] = {"passages": meta.passages, "build_s": round(time.perf_counter() - started, 2)}
            print(f"index: {meta.passages} passages built in {result['index']['build_s']} s")
        backend = LocalBM25(index)
        emb_mpnet = EmbeddingFilter(str(mpnet), keep=5, device="cpu" if not args.dpr else None)
        stages = {
            "bm25+minilm": SearchPipeline(backend, embed=EmbeddingFilter(str(minilm), keep=5), keep=3),
            "bm25+mpnet": SearchPipeline(backend, embed=emb_mpnet, keep=3),
        }
        if args.dpr:
            stages["bm25+mpnet+dpr"] = SearchPipeline(
                backend, embed=emb_mpnet, rerank=DPRReranker(args.dpr, keep=3), keep=3
            )
        print(f"recall@3 of the supporting paragraphs, {len(questions)} HotpotQA questions (rpt_dev)")
        result.update(quality(backend, questions, stages))
        print(
            f"  {'bm25':<16} recall@3 {result['recall_at_3']['bm25']:.3f}"
            f"   (BM25 recall@10: {result['recall_at_10_bm25']:.3f})"
        )

        # throughput: fresh queries every round (no cache), the two settings interleaved against machine noise
        model = {"minilm": minilm, "mpnet": mpnet}[args.throughput_model]
        # no passage-embedding memo here: the rounds repeat the same candidates, and this part measures batching
        base = {
            "kind": "local",
            "index": {"path": str(index)},
            "embed_model": str(model),
            "num_cpus": 2,
            "embed_memo": 0,
        }
        actors = {
            "batched": SearchActor(SearchConfig.model_validate({**base, "max_batch_size": 32}).model_dump(), None),
            "unbatched": SearchActor(SearchConfig.model_validate({**base, "max_batch_size": 1}).model_dump(), None),
        }
        per_round = [q for q, _ in load_questions(data_dir, 8 if args.quick else 64)]
        rates: dict[str, list[float]] = {k: [] for k in actors}
        for r in range(rounds):
            for name, actor in actors.items():
                qs = [f"{q} ({name} {r})" for q in per_round]  # distinct text: nothing is reused between runs
                rates[name].append(asyncio.run(throughput(actor, qs)))
        qps = {k: round(statistics.median(v), 2) for k, v in rates.items()}
        result["queries_per_s_per_actor"] = qps
        result["batching_speedup"] = round(qps["batched"] / qps["unbatched"], 3)
        result["throughput_model"] = args.throughput_model
        print(
            f"queries/s per actor ({args.throughput_model}, 32 in flight):"
            f" batched {qps['batched']}, unbatched {qps['unbatched']}"
            f" -> {result['batching_speedup']}x"
        )

        # the passage-embedding memo on real agent queries
        agent = agent_queries(data_dir, 24 if args.quick else 240)
        memo_rates = {}
        for name, size in (("memo", 20_000), ("no_memo", 0)):
            actor = SearchActor(SearchConfig.model_validate({**base, "embed_memo": size}).model_dump(), None)
            memo_rates[name] = round(asyncio.run(throughput(actor, agent)), 2)
            if size:
                st = actor.stats()
                reused = st["passage_embeddings_reused"] / (st["passage_embeddings_reused"] + st["passages_encoded"])
        result["agent_queries"] = len(agent)
        result["memo_queries_per_s"] = memo_rates
        result["memo_speedup"] = round(memo_rates["memo"] / memo_rates["no_memo"], 3)
        result["memo_reused_share"] = round(reused, 3)
        print(
            f"passage-embedding memo, {len(agent)} GPT-3.5 StrategyQA queries: {memo_rates['memo']} vs"
            f" {memo_rates['no_memo']} queries/s -> {result['memo_speedup']}x ({reused:.1%} of embeddings reused)"
        )

        # cache: a warm actor answers repeated queries from the shared file cache
        cached = SearchActor(SearchConfig.model_validate(base).model_dump(), str(Path(tmp) / "cache.jsonl"))
        probe = [q for q, _ in questions][:8]

        async def latencies(qs: list[str]) -> list[float]:
            out = []
            for q in qs:
                t = time.perf_counter()
                await cached.run(q)
                out.append((time.perf_counter() - t) * 1000)
            return out

        miss = asyncio.run(latencies(probe))
        hit = asyncio.run(latencies(probe * 10))
        result["cache_hit_ms"] = {"p50": round(percentile(hit, 0.5), 4), "p99": round(percentile(hit, 0.99), 4)}
        result["cache_miss_ms"] = {"p50": round(percentile(miss, 0.5), 1), "p99": round(percentile(miss, 0.99), 1)}
        result["cache_stats"] = cached.stats()["cache"]
        print(
            f"cache hit: p50 {result['cache_hit_ms']['p50']} ms, p99 {result['cache_hit_ms']['p99']} ms;"
            f" miss (one lone query): p50 {result['cache_miss_ms']['p50']} ms"
        )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
