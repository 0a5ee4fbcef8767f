"""The tool interface the episode runner sees: an async callable from the action argument to the observation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Tool = Callable[[str], Awaitable[str]]


class ToolError(Exception):
    """The tool could not answer (its actor died, it timed out) after retries: an infrastructure failure.

    A tool's own ``Error: …`` observation (a bad expression) is not a ToolError: it goes back to the agent."""
