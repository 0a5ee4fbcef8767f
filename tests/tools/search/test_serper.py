"""The Serper backend against a real HTTP server on 127.0.0.1 answering in Serper's JSON format."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nat_ray.errors import InputError
from nat_ray.tools.search.base import SearchBackendError
from nat_ray.tools.search.pipeline import SearchPipeline
from nat_ray.tools.search.serper import Serper
from tests.tools.search.fake_serper import FakeSerper

KEY = "sk-serper-test-0123456789"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", KEY)
    with FakeSerper(slow_s=20.0) as s:
        yield s


def _search(server: FakeSerper, queries: list[str], **kw) -> tuple[list[str], Serper]:
    async def run():
        backend = Serper(url=server.url, backoff_s=0.01, **kw)
        pipeline = SearchPipeline(backend, candidates=10, keep=3)
        try:
            return await pipeline.search(queries), backend
        finally:
            await pipeline.aclose()

    return asyncio.run(run())


def test_organic_results_become_the_observation(server: FakeSerper) -> None:
    (obs,), backend = _search(server, ["who wrote  Hamlet"])
    assert obs == (
        " #1: Result 1 for who wrote Hamlet: snippet 1: who wrote Hamlet."
        " #2: Result 2 for who wrote Hamlet: snippet 2: who wrote Hamlet."
        " #3: Result 3 for who wrote Hamlet: snippet 3: who wrote Hamlet."
    )
    assert server.requests == [{"q": "who wrote Hamlet", "num": 10}]
    assert server.headers[0]["x-api-key"] == KEY and backend.retries == 0


def test_links_and_titles_are_kept() -> None:
    async def run():
        with FakeSerper() as s:
            backend = Serper(url=s.url)
            try:
                return await backend.retrieve(["q"], 4)
            finally:
                await backend.aclose()

    import os

    os.environ["SERPER_API_KEY"] = KEY
    try:
        (passages,) = asyncio.run(run())
    finally:
        del os.environ["SERPER_API_KEY"]
    assert [p.link for p in passages] == [f"https://example.org/{i}" for i in range(1, 5)]
    assert passages[0].title == "Result 1 for q" and passages[0].text == "snippet 1: q."


@pytest.mark.parametrize("failure", [429, 500, 503, "slow", "garbage", "empty", "list"])
def test_a_transient_failure_is_retried(server: FakeSerper, failure) -> None:
    server.script = [failure, failure]
    (obs,), backend = _search(server, ["capital of France"], timeout_s=1.5)
    assert obs.startswith(" #1: Result 1 for capital of France")
    assert backend.retries == 2 and len(server.requests) == 3


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (500, "HTTP 500"),
        (429, "HTTP 429"),
        ("slow", "timed out"),
        ("garbage", "malformed response body (not JSON)"),
        ("empty", "malformed response body (no 'organic' results)"),
    ],
)
def test_persistent_failure_is_an_error_observation(server: FakeSerper, failure, message: str) -> None:
    server.script = [failure] * 3
    (obs, ok), _ = _search(server, ["q1", "q2"], timeout_s=1.5, max_retries=1)
    # one query failed twice (its own and its retry); the other still got its answer
    failed = obs if obs.startswith("Error") else ok
    assert failed == f"Error: serper search failed after 2 attempts: {message}"
    assert (ok if failed is obs else obs).startswith(" #1: Result 1")


def test_nothing_found_is_an_answer_not_a_failure(server: FakeSerper) -> None:
    server.script = ["none-found"]
    (obs,), backend = _search(server, ["xqzv"])
    assert obs == "No results found." and backend.retries == 0


def test_bad_key_is_not_retried_and_never_shown(server: FakeSerper, caplog) -> None:
    server.script = [401]
    caplog.set_level(logging.DEBUG)
    (obs,), backend = _search(server, ["q"])
    assert obs == "Error: serper answered HTTP 401 (check the key in $SERPER_API_KEY)"
    assert backend.retries == 0 and len(server.requests) == 1
    assert KEY not in obs and KEY not in caplog.text


def test_unreachable_server_is_an_error_observation(monkeypatch) -> None:
    monkeypatch.setenv("SERPER_API_KEY", KEY)

    async def run():
        backend = Serper(url="http://127.0.0.1:9/search", max_retries=1, backoff_s=0.01)
        try:
            return await backend.retrieve(["q"], 10)
        finally:
            await backend.aclose()

    (result,) = asyncio.run(run())
    assert isinstance(result, SearchBackendError) and "connection failed" in str(result)


def test_missing_key_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("MY_SERPER_KEY", raising=False)
    with pytest.raises(InputError, match=r"set \$MY_SERPER_KEY"):
        Serper(api_key_env="MY_SERPER_KEY")
