"""The ``serper`` backend: Google results through the Serper API (what the paper used), organic title/snippet/link.

The key is read from ``$SERPER_API_KEY`` (or the variable ``tools.search.serper.api_key_env`` names) and only ever
sent as the ``X-API-KEY`` header: it is not stored in config, logged, or put in an error message. 429 and 5xx
answers, timeouts, refused connections and malformed bodies are retried with exponential back-off (honouring
``Retry-After``); after the last attempt the query gets an error, which the agent reads as ``Error: …``.
"""

from __future__ import annotations

import asyncio
import os
import random

import httpx2

from nat_ray.errors import InputError
from nat_ray.tools.search.base import Passage, SearchBackendError


def serper_api_key(env_name: str) -> str:
    key = os.environ.get(env_name)
    if not key:
        raise InputError(f"the serper search backend needs an API key: set ${env_name}")
    return key


class Serper:
    name = "serper"

    def __init__(
        self,
        url: str = "https://google.serper.dev/search",
        api_key_env: str = "SERPER_API_KEY",
        timeout_s: float = 10.0,
        max_retries: int = 3,
        max_concurrency: int = 16,
        backoff_s: float = 0.5,
    ) -> None:
        key = serper_api_key(api_key_env)
        self.url = url
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._slots = asyncio.Semaphore(max_concurrency)
        self._client = httpx2.AsyncClient(
            timeout=timeout_s, headers={"X-API-KEY": key, "Content-Type": "application/json"}
        )
        self.retries = 0

    def fingerprint(self) -> str:
        return f"serper:{self.url}"

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), 30.0)
            except ValueError:
                pass
        return min(self.backoff_s * 2**attempt, 8.0) * (0.5 + random.random())

    async def _one(self, query: str, k: int) -> list[Passage] | SearchBackendError:
        problem = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                async with self._slots:
                    response = await self._client.post(self.url, json={"q": query, "num": k})
            except httpx2.TimeoutException:
                problem = "timed out"
            except httpx2.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    problem = f"HTTP {status}"
                    retry_after = response.headers.get("retry-after")
                elif status >= 400:  # a bad key or request: retrying will not help
                    hint = f" (check the key in ${self.api_key_env})" if status in (401, 403) else ""
                    return SearchBackendError(f"serper answered HTTP {status}{hint}")
                else:
                    parsed = _parse(response)
                    if not isinstance(parsed, str):
                        return parsed[:k]
                    problem = parsed
            if attempt < self.max_retries:
                self.retries += 1
                await asyncio.sleep(self._delay(attempt, retry_after))
        return SearchBackendError(f"serper search failed after {self.max_retries + 1} attempts: {problem}")

    async def retrieve(self, queries: list[str], k: int) -> list[list[Passage] | SearchBackendError]:
        return list(await asyncio.gather(*(self._one(q, k) for q in queries)))

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(response: httpx2.Response) -> list[Passage] | str:
    """Organic results as passages, or what was wrong with the body (a string: the caller retries)."""
    try:
        body = response.json()
    except ValueError:
        return "malformed response body (not JSON)"
    # a Serper answer is an object with its searchParameters, and "organic" unless nothing was found
    if not isinstance(body, dict) or not ("organic" in body or "searchParameters" in body):
        return "malformed response body (no 'organic' results)"
    organic = body.get("organic") or []
    if not isinstance(organic, list):
        return "malformed response body ('organic' is not a list)"
    passages = []
    for item in organic:
        if isinstance(item, dict) and item.get("snippet"):
            passages.append(
                Passage(title=str(item.get("title", "")), text=str(item["snippet"]), link=str(item.get("link", "")))
            )
    return passages
