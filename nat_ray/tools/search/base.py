"""What every search backend returns, and the observation the agent reads.

A backend maps queries to candidate passages (``retrieve``, batched: the local BM25 index answers many queries in
one call, the web backend sends them concurrently). Ranking and formatting are the pipeline's, not the backend's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Passage:
    title: str
    text: str  # a web result's snippet, or a corpus paragraph
    link: str = ""  # a web result's URL, or the corpus passage id

    def render(self, max_chars: int | None = None) -> str:
        body = f"{self.title}: {self.text}" if self.title else self.text
        body = " ".join(body.split())  # observations are one line: the paper's ' #1: … #2: …'
        if max_chars is not None and len(body) > max_chars:
            body = body[: max_chars - 3].rstrip() + "..."
        return body


class SearchBackendError(Exception):
    """The backend could not answer after its retries; the agent gets an ``Error: …`` observation instead."""


class SearchBackend(Protocol):
    name: str

    async def retrieve(self, queries: list[str], k: int) -> list[list[Passage] | SearchBackendError]:
        """Up to ``k`` candidates per query, best first; a failed query gets its error (the others still answer)."""
        ...

    def fingerprint(self) -> str:
        """What identifies this backend's answers (for the cache key): the index built, or the web endpoint."""
        ...

    async def aclose(self) -> None: ...


NO_RESULTS = "No results found."


def format_observation(passages: list[Passage], max_chars: int | None = None) -> str:
    """The paper's ``GOOGLESearchTitlesSnippets`` observation: `` #1: … #2: … #3: …`` (leading space included)."""
    if not passages:
        return NO_RESULTS
    return "".join(f" #{i}: {p.render(max_chars)}" for i, p in enumerate(passages, start=1))
