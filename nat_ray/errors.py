"""Errors a user can act on. The CLI prints them as one line and exits non-zero, with no traceback."""

from __future__ import annotations


class NatRayError(Exception):
    """Base class of errors caused by the user's input or configuration (not bugs)."""


class InputError(NatRayError):
    """Bad input: a malformed file, a missing key or id, an unknown task, template or mode."""
