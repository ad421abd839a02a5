"""Where to send someone after signing in: only back to a page of this site."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from .. import htmx


def safe_next(value: str | None) -> str | None:
    """`value` if it is a relative path on this site, else None.

    Only "/path?query" is accepted: "//host", "/\\host", schemes and control characters
    would let a crafted sign-in link send people to another site (open redirect).
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ch in value for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def return_path() -> str | None:
    """The page to come back to after signing in, for the request being refused."""
    if htmx.is_htmx():
        # The fragment URL (a POST endpoint, a card) is not a page; the page htmx was on is.
        return safe_next(htmx.current_page())
    if request.method == "GET":
        return safe_next(request.full_path.rstrip("?"))
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host:
        return safe_next(referrer.path + (f"?{referrer.query}" if referrer.query else ""))
    return None
