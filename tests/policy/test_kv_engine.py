"""The KV-reusing engine (`policy.batching: cached`): the same replies as `generate`, turn after turn, while it
prefills only what a conversation added; seeded sampling that does not depend on the batch; failures stay local."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from nat_ray.policy.base import SamplingParams
from nat_ray.policy.hf_engine import HFEngine
from nat_ray.policy.kv_engine import prefill_parts
from nat_ray.policy.prefix_store import PrefixStore

QUESTIONS = ["What is 2 + 2?", "Name a prime number above 10.", "Say hello in French.", "What colour is the sky?"]
# a task prompt long enough to be pinned and shared by the rows' decode steps (nat_ray.policy.cascade)
INSTRUCTIONS = "You answer questions in one short sentence. " + " ".join(f"Rule {i}: be brief." for i in range(40))


def _kv(n: int, fill: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, n, 2), fill), torch.full((1, n, 2), fill))]


def test_prefix_store_finds_the_longest_prefix_supersedes_and_evicts() -> None:
    store = PrefixStore(max_tokens=10)
    store.put(torch.tensor([1, 2, 3, 4]), _kv(4, 1.0))
    store.put(torch.tensor([1, 2, 9]), _kv(3, 2.0))
    n, kv, whole = store.lookup(torch.tensor([1, 2, 3, 4, 5]))  # the same conversation, a turn later
    assert n == 4 and kv is not None and kv[0][0].shape[1] == 4 and float(kv[0][0][0, 0, 0]) == 1.0 and whole
    n, kv, whole = store.lookup(torch.tensor([1, 2, 3, 4]))  # the last token is always fed: at most len - 1 reused
    assert n == 3 and kv is not None and kv[0][0].shape[1] == 3 and not whole
    parted = store.lookup(torch.tensor([1, 2, 7]))  # where two conversations part ways
    assert parted.tokens == 2 and not parted.whole
    assert store.lookup(torch.tensor([7, 8])) == (0, None, False)
    store.put(torch.tensor([1, 2, 3, 4, 5, 6]), _kv(6, 3.0))  # extends [1, 2, 3, 4]: that entry goes
    assert len(store) == 2
    store.put(torch.tensor([5, 5, 5]), _kv(3, 4.0))  # 6 + 3 + 3 tokens > 10: the least recently used goes
    # [1, 2, 9] (which would give 3) is gone; [1, 2, 3, 4, 5, 6] shares 2 tokens
    assert len(store) == 2 and store.lookup(torch.tensor([1, 2, 9, 9]))[0] == 2
    assert store.reused_tokens == 4 + 3 + 2 + 2 and store.prompt_tokens == 5 + 4 + 3 + 2 + 4


def test_prefill_parts_keep_long_and_short_prompts_apart_and_every_request_once() -> None:
    new = [80, 15, 14, 16, 78, 15]  # first turns (a question) among later turns (an observation)
    parts = prefill_parts(new)
    assert sorted(i for p in parts for i in p) == list(range(len(new)))
    assert [sorted(p) for p in parts] == [[1, 2, 3, 5], [0, 4]]
    assert prefill_parts([20, 21, 22]) == [[0, 1, 2]]  # one more forward costs more than the padding it saves
    assert prefill_parts([]) == []


@pytest.fixture(scope="module")
def engines(smollm2: Path):
    static = HFEngine(smollm2, dtype="float32", max_batch_size=4, batching="static")
    cached = HFEngine(smollm2, dtype="float32", max_batch_size=4, batching="cached")
    yield static, cached
    cached.close()


@pytest.mark.slow  # loads SmolLM2
def test_cached_replies_as_generate_does_turn_after_turn_prefilling_only_what_is_new(engines) -> None:
    static, cached = engines
    params = [SamplingParams(temperature=0.0, max_tokens=m) for m in (24, 16, 24, 8)]
    stop_early = SamplingParams(temperature=0.0, max_tokens=24, stop=(" ",))  # a stop string inside the reply
    params[2] = stop_early
    convs = [[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": q}] for q in QUESTIONS]

    async def turn(conversations):
        return await asyncio.gather(*(cached.generate(c, p) for c, p in zip(conversations, params, strict=True)))

    for k in range(2):
        got = asyncio.run(turn(convs))
        want = [static.generate_batch([c], p)[0] for c, p in zip(convs, params, strict=True)]
        assert [g.text for g in got] == [w.text for w in want], f"turn {k}"
        assert [g.completion_tokens for g in got] == [w.completion_tokens for w in want]
        assert [g.prompt_tokens for g in got] == [w.prompt_tokens for w in want]
        assert got[2].completion_tokens < 24 and " " not in got[2].text.strip()
        convs = [[*c, {"role": "assistant", "content": g.text}, {"role": "user", "content": "Observation: ok"}]
                 for c, g in zip(convs, got, strict=True)]  # fmt: skip
    stats = cached.cache_stats()
    # turn 2 of each conversation starts from its turn-1 cache; turn 1 of the later ones from the first's prompt
    assert stats["reused_tokens"] > 0.5 * stats["prompt_tokens"] - sum(len(q) for q in QUESTIONS)
    assert stats["steps"] > 0
    assert stats["pinned_rows"] >= 2 * len(QUESTIONS) - 1  # all but the first turn decode on the shared prompt


@pytest.mark.slow  # loads SmolLM2
def test_a_conversation_s_own_history_is_not_pinned_as_if_shared(engines) -> None:
    """Pins are for prefixes several conversations share. A later turn reuses its own earlier turn's cache whole;
    pinning that (a group of one row) had made a math eval's decode step run two more matmuls per row and layer."""
    _, cached = engines
    params = SamplingParams(temperature=0.0, max_tokens=8)
    # long, distinct openings: each conversation's turn 2 reuses > 128 tokens of its own turn 1, and no other's
    convs = [[{"role": "user", "content": f"{q} " + " ".join(f"{q[:5]} detail {i}." for i in range(40))}]
             for q in QUESTIONS]  # fmt: skip
    before = cached.cache_stats()["pinned_rows"]

    async def turn(conversations):
        return await asyncio.gather(*(cached.generate(c, params) for c in conversations))

    for _ in range(2):
        got = asyncio.run(turn(convs))
        convs = [[*c, {"role": "assistant", "content": g.text}, {"role": "user", "content": "Observation: ok"}]
                 for c, g in zip(convs, got, strict=True)]  # fmt: skip
    assert cached.cache_stats()["pinned_rows"] == before


@pytest.mark.slow  # loads SmolLM2
def test_a_seeded_sample_does_not_depend_on_what_shares_its_batch(engines) -> None:
    _, cached = engines
    seeded = SamplingParams(temperature=1.0, max_tokens=16, seed=1234)
    conv = [{"role": "user", "content": "Tell me a word."}]

    async def alone():
        return await cached.generate(conv, seeded)

    async def crowded():
        others = [cached.generate([{"role": "user", "content": q}], SamplingParams(temperature=1.0, max_tokens=16))
                  for q in QUESTIONS[:3]]  # fmt: skip
        return (await asyncio.gather(cached.generate(conv, seeded), *others))[0]

    first, second = asyncio.run(alone()), asyncio.run(crowded())
    assert first.text == second.text and first.completion_tokens == second.completion_tokens


@pytest.mark.slow  # loads SmolLM2
def test_a_request_longer_than_the_context_fails_alone(engines) -> None:
    _, cached = engines
    too_long = SamplingParams(temperature=0.0, max_tokens=10_000_000)

    async def both():
        return await asyncio.gather(
            cached.generate([{"role": "user", "content": "hi"}], too_long),
            cached.generate([{"role": "user", "content": "hi"}], SamplingParams(temperature=0.0, max_tokens=4)),
            return_exceptions=True,
        )

    bad, good = asyncio.run(both())
    assert isinstance(bad, ValueError) and "context" in str(bad)
    assert good.completion_tokens <= 4


@pytest.mark.slow  # loads SmolLM2
def test_seeded_episodes_draw_the_same_whatever_runs_beside_them(engines, data_dir: Path) -> None:
    """An eval's reproducibility, on a real model: each reply seeded from the run's seed and the episode's key
    (nat_ray.episode.episode_seed), episodes run together reply as each run alone, in the other order."""
    from nat_ray.episode import EpisodeRunner, EpisodeSettings, EpisodeSpec
    from nat_ray.policy.engine_client import LocalEnginePolicy
    from nat_ray.prompts import get_template
    from nat_ray.tasks import get_task
    from nat_ray.tools.calculator import Calculator

    _, cached = engines
    calc = Calculator(isolate=False)

    async def calculate(arg: str) -> str:
        return calc(arg)

    template = get_template(data_dir / "nat/prompts/gsm8k/gsm8k_conversation.json", "zero-shot")
    settings = EpisodeSettings(get_task("gsm8k"), template, "t", max_turns=2, max_tokens=24, seed=7)
    runner = EpisodeRunner(settings, LocalEnginePolicy(cached, "smollm2"), {"calculate": calculate})
    specs = [EpisodeSpec("gsm8k", str(i), q, "4", 0.8, s) for i, q in enumerate(QUESTIONS[:2]) for s in range(2)]

    async def together():
        return await asyncio.gather(*(runner.run(s) for s in specs))

    def transcript(t) -> tuple:  # (a malformed first reply ends an episode with no turns: it is kept beside them)
        return tuple(x.content for x in t.turns), t.malformed_reply

    crowded = asyncio.run(together())
    alone = [asyncio.run(runner.run(s)) for s in reversed(specs)][::-1]
    assert [transcript(t) for t in crowded] == [transcript(t) for t in alone]
    assert len({transcript(t) for t in crowded}) > 1  # the seeds differ by episode: not one draw for all
