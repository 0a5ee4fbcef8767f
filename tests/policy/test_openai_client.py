from __future__ import annotations

import asyncio
import socket

import pytest

from nat_ray.policy.base import PolicyError, SamplingParams
from nat_ray.policy.openai_client import OpenAIPolicy
from tests.policy.fake_openai import FakeOpenAI

PARAMS = SamplingParams(temperature=0.5, max_tokens=32)
MSGS = [{"role": "user", "content": "Question: 2+3?"}]


def _policy(url: str, **kw) -> OpenAIPolicy:
    kw = {"max_retries": 3, "backoff_s": 0.01, "timeout_s": 5.0, **kw}
    return OpenAIPolicy(base_url=url, model=kw.pop("model", "fake-model"), **kw)


def _run(coro):
    return asyncio.run(coro)


def test_completion_request_and_stop_trimming() -> None:
    with FakeOpenAI() as srv:
        srv.reply = "Thought: t\nAction: calculate[2+3]\nObservation: 5"  # a server that ignores stop
        c = _run(_policy(srv.base_url).complete(MSGS, PARAMS))
        assert c.text == "Thought: t\nAction: calculate[2+3]"
        assert (c.prompt_tokens, c.completion_tokens) == (10, 3)
        req = srv.requests[0]
        assert req["model"] == "fake-model" and req["temperature"] == 0.5 and req["max_tokens"] == 32
        assert req["stop"] == ["\nObservation:"] and req["messages"] == MSGS


@pytest.mark.parametrize("failures", [[429], [500, 503], ["garbage", 502]])
def test_retries_with_backoff_on_transient_failures(failures: list) -> None:
    with FakeOpenAI() as srv:
        srv.script = list(failures)
        assert _run(_policy(srv.base_url).complete(MSGS, PARAMS)).text == "Action: finish[5]"
        assert len(srv.requests) == len(failures) + 1


def test_gives_up_after_retries_and_does_not_retry_client_errors() -> None:
    with FakeOpenAI() as srv:
        srv.script = [500] * 10
        with pytest.raises(PolicyError, match="no answer after 4 attempts"):
            _run(_policy(srv.base_url).complete(MSGS, PARAMS))
        assert len(srv.requests) == 4
        srv.script, srv.requests = [400], []
        with pytest.raises(PolicyError, match="HTTP 400"):
            _run(_policy(srv.base_url).complete(MSGS, PARAMS))
        assert len(srv.requests) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(PolicyError, match="no answer after 2 attempts"):
        _run(_policy(url, max_retries=1).complete(MSGS, PARAMS))
    with pytest.raises(PolicyError, match="unreachable") as err:
        _run(_policy(url).check())
    port = url.split(":")[2].split("/")[0]
    assert f"transformers serve MODEL_DIR --host 127.0.0.1 --port {port}" in str(err.value)


def test_model_auto_asks_the_server() -> None:
    with FakeOpenAI(model="/models/SmolLM2") as srv:
        p = _policy(srv.base_url, model="auto")
        _run(p.check())
        assert p.model == "/models/SmolLM2"
        _run(p.complete(MSGS, PARAMS))
        assert srv.requests[0]["model"] == "/models/SmolLM2"


def test_concurrency_is_bounded() -> None:
    with FakeOpenAI() as srv:
        srv.delay_s = 0.2
        p = _policy(srv.base_url, max_concurrency=2)

        async def many():
            await asyncio.gather(*(p.complete(MSGS, PARAMS) for _ in range(6)))

        _run(many())
        assert srv.max_active == 2 and len(srv.requests) == 6


def test_api_key_comes_from_the_environment_and_stays_out_of_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAT_RAY_TEST_KEY", "sk-test-SECRET-123")
    with FakeOpenAI() as srv:
        _run(_policy(srv.base_url, api_key_env="NAT_RAY_TEST_KEY").complete(MSGS, PARAMS))
        assert srv.headers[0]["authorization"] == "Bearer sk-test-SECRET-123"
        srv.script = [401]
        with pytest.raises(PolicyError) as err:
            _run(_policy(srv.base_url, api_key_env="NAT_RAY_TEST_KEY").complete(MSGS, PARAMS))
        assert "SECRET" not in str(err.value)
