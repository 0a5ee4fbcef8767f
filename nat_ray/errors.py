"""Errors a user can act on. The CLI prints them as one line and exits non-zero, with no traceback."""

from __future__ import annotations


class NatRayError(Exception):
    """Base class of errors caused by the user's input or configuration (not bugs)."""


def first_validation_error(exc: Exception) -> tuple[str, str]:
    """(dotted location, message) of a pydantic ValidationError's first error; ("", str(exc)) for anything else."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return "", str(exc)
    err = errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


class InputError(NatRayError):
    """Bad input: a malformed file, a missing key or id, an unknown task, template or mode."""
