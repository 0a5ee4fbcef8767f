"""Any OpenAI-compatible chat endpoint: OpenAI, ``vllm serve``, Ray Serve LLM, ``transformers serve``.

Async, with bounded concurrency and retries with exponential back-off (and jitter) on 429, 5xx, timeouts and refused
connections. The API key is read from an environment variable (``api_key_env``) and never logged; local servers
accept any key, so a missing variable means the placeholder ``EMPTY``.
"""

from __future__ import annotations

import asyncio
import os
import random
from urllib.parse import urlsplit

import openai

from nat_ray.policy.base import Completion, Policy, PolicyError, SamplingParams, trim_at_stop

_RETRYABLE = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError)


class OpenAIPolicy(Policy):
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 64,
        max_retries: int = 5,
        timeout_s: float = 300.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_concurrency = max_concurrency
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", max_retries=0, timeout=timeout_s
        )
        self._sem: asyncio.Semaphore | None = None
        self._auto = model == "auto"  # ask the server: for local servers that serve one model under its path

    async def _model(self) -> str:
        if self._auto:
            try:
                models = await self._client.models.list()
            except Exception as exc:
                raise PolicyError(f"{self.base_url}: cannot list models for model 'auto': {_short(exc)}") from None
            if not models.data:
                raise PolicyError(f"{self.base_url}: serves no models")
            self.model, self._auto = models.data[0].id, False
        return self.model

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:  # created lazily: it belongs to the event loop that runs the episodes
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._sem

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                model = await self._model()
                async with self._semaphore():
                    r = await self._client.chat.completions.create(
                        model=model,
                        messages=messages,  # type: ignore[arg-type]
                        temperature=params.temperature,
                        top_p=params.top_p,
                        max_tokens=params.max_tokens,
                        stop=list(params.stop) or None,
                        seed=params.seed,
                    )
                text = (r.choices[0].message.content or "") if r.choices else ""
                usage = r.usage
                return Completion(
                    text=trim_at_stop(text, params.stop),
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
            except _RETRYABLE as exc:
                last = exc
            except openai.APIStatusError as exc:  # other 4xx: the request itself is wrong; retrying will not help
                raise PolicyError(f"{self.base_url}: HTTP {exc.status_code}: {_short(exc)}") from None
            except (openai.APIError, ValueError, KeyError, TypeError) as exc:  # malformed reply body
                last = exc
            if attempt < self.max_retries:
                delay = min(self.backoff_max_s, self.backoff_s * 2**attempt)
                await asyncio.sleep(delay * (0.5 + random.random()))
        raise PolicyError(f"{self.base_url}: no answer after {self.max_retries + 1} attempts: {_short(last)}")

    async def check(self) -> None:
        try:
            await self._client.with_options(timeout=15.0).models.list()
            await self._model()
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise PolicyError(
                    f"{self.base_url}: the endpoint refused the API key (HTTP {exc.status_code})"
                ) from None
            # some servers have no /models; a status answer still proves the endpoint is up
        except Exception as exc:
            raise PolicyError(
                f"policy endpoint {self.base_url} is unreachable ({_short(exc)}); {_start_hint(self.base_url)}"
            ) from None

    async def aclose(self) -> None:
        await self._client.close()


def _start_hint(base_url: str) -> str:
    """How to bring up a server at ``base_url``: on this machine, the commands that start one; else what to check."""
    url = urlsplit(base_url)
    if url.hostname in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        port = url.port or 8000
        return (
            f"start one with `transformers serve MODEL_DIR --host 127.0.0.1 --port {port} --continuous-batching "
            "--cb-num-blocks 128` "
            f"(CPU; MODEL_DIR e.g. from `nat-ray models prepare smollm2`) or `vllm serve MODEL --port {port}` (GPU)"
        )
    return "check policy.base_url and that the server is up (vllm serve, or a hosted API)"


def _short(exc: Exception | None) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}" if exc else "unknown error"
