"""Credentials have no place in a URL the config holds: the config is saved beside every output, logged and mirrored.

A URL is refused when it carries user-info (``https://user:pass@host``) or a query parameter whose name says it is a
secret (``?api_key=…``, ``?token=…``, a signed URL's ``X-Amz-Signature``); keys come from the environment."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

_SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "signature", "sig", "credential", "code")
_SECRET_ENDINGS = ("key", "token", "secret", "password", "signature")  # apikey, accesstoken, x_amz_signature


def credentials_in(url: str) -> str | None:
    """What in ``url`` is a credential ("user-info", "query parameter 'api_key'"), or None."""
    parts = urlsplit(url)
    if parts.username or parts.password or "@" in parts.netloc:
        return "user-info"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        lowered = name.lower().replace("-", "_")
        if any(w in _SECRET_WORDS for w in lowered.split("_")) or lowered.endswith(_SECRET_ENDINGS):
            return f"query parameter {name!r}"
    return None


def refuse_credentials(field: str, url: str | None, where: str) -> None:
    """Raise ValueError naming ``field`` when ``url`` carries a credential; ``where`` says where it belongs."""
    found = credentials_in(url) if url else None
    if found:
        raise ValueError(f"{field}: the URL carries a credential ({found}); {where}")
