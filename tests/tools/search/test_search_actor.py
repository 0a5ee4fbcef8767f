"""The search actor on a real local Ray cluster: batched concurrent queries, and a backend that fails never kills it."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.tools import SearchActor
from tests.tools.search.fake_serper import FakeSerper

pytestmark = pytest.mark.slow
KEY = "sk-serper-actor-test"


def test_serper_failures_reach_the_agent_and_the_actor_lives(ray_local, minilm: Path) -> None:
    import ray

    # The timeout is far above a loaded machine's answer time (CI once saw a 0.5 s limit fail the 24 concurrent
    # queries beside another test) and far below the slow answer's.
    with FakeSerper(slow_s=30.0) as server:
        config = {
            "kind": "serper",
            "serper": {"url": server.url, "max_retries": 1, "timeout_s": 4.0, "backoff_s": 0.01},
            "embed_model": str(minilm),
            "num_cpus": 0.5,
        }
        actor = (
            ray.remote(num_cpus=0.5, max_concurrency=1000)(SearchActor)
            .options(runtime_env={"env_vars": {"SERPER_API_KEY": KEY}})
            .remote(config, None)
        )
        server.script = [500, 500, "garbage", "garbage", "slow", "slow"]
        failed = [ray.get(actor.run.remote(f"q{i}")) for i in range(3)]
        assert [f.split(": ", 2)[-1] for f in failed] == ["HTTP 500", "malformed response body (not JSON)", "timed out"]
        assert all(f.startswith("Error: serper search failed after 2 attempts") for f in failed)
        # the same actor answers the next queries; concurrent ones are ranked in shared batches
        answers = ray.get([actor.run.remote(f"query {i}") for i in range(24)])
        wrong = [(i, a) for i, a in enumerate(answers) if not (a.startswith(" #1: Result ") and f"query {i}" in a)]
        assert not wrong, wrong
        stats = ray.get(actor.stats.remote())
        assert stats["queries"] == 27 and stats["errors"] == 3
        assert stats["batches"] < 27  # 24 concurrent queries did not each get their own batch
        assert all(h["x-api-key"] == KEY for h in server.headers)
        ray.kill(actor)
