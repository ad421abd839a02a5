"""The Host names this server answers to (RUNBASE_ALLOWED_HOSTS).

Without RUNBASE_PUBLIC_URL, absolute URLs (output files, the OpenAPI document's
`servers`, share and redirect links) are built from the request's Host header. A request
sent with `Host: attacker.invalid` would get URLs on the attacker's host, and a cache in
front of the server could keep that answer for everyone. So every request's Host must be
one of the allowed names; any other is refused with 400 before a view runs.

Allowed by default: the loopback names (what `python app.py` is opened with) and, when
set, the host of RUNBASE_PUBLIC_URL.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable
from urllib.parse import urlsplit

from flask import Flask, abort, request

from .errors import HostNotAllowed

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = "*"
REFUSAL = ("This server does not answer to this Host. Its operator sets the names it answers "
           "to with RUNBASE_ALLOWED_HOSTS or RUNBASE_PUBLIC_URL.")
UNSET_WARNING = """
************************************************************************************
RUNBASE: neither RUNBASE_PUBLIC_URL nor RUNBASE_ALLOWED_HOSTS is set.
This server answers only to requests for localhost, 127.0.0.1 and [::1] (400 for any
other Host), and builds absolute URLs from the request's Host. Before serving real
traffic set RUNBASE_PUBLIC_URL=https://your.host (recommended: absolute URLs then never
depend on the request, and webhook payloads carry absolute file URLs), or list the
names clients use in RUNBASE_ALLOWED_HOSTS=your.host,other.host.
************************************************************************************"""


def host_name(host: str) -> str:
    """The name part of a Host value, lower case, without port or trailing dot:
    `Example.COM:8080` → `example.com`, `[::1]:5000` → `[::1]`; "" when malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else ""
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def url_host(url: str) -> str:
    """The host of an absolute URL as a Host header names it (IPv6 in brackets)."""
    name = urlsplit(url).hostname or ""
    return f"[{name}]" if ":" in name else name


def effective_hosts(configured: Iterable[str] | None, public_url: str) -> tuple[str, ...]:
    """The names to answer to: RUNBASE_ALLOWED_HOSTS when set, else the loopback names
    and the host of RUNBASE_PUBLIC_URL."""
    if configured is not None:
        return tuple(configured)
    extra = (url_host(public_url),) if public_url else ()
    return extra + LOOPBACK_NAMES


def is_allowed(name: str, allowed: Iterable[str]) -> bool:
    """Whether `name` (from host_name) matches: `*` matches any, `.example.com` matches
    example.com and every name under it, anything else matches itself."""
    if not name:
        return False
    for pattern in allowed:
        if pattern == ANY_HOST or name == pattern:
            return True
        if pattern.startswith(".") and (name == pattern[1:] or name.endswith(pattern)):
            return True
    return False


def under_gunicorn() -> bool:
    """True in a gunicorn process: its arbiter sets SERVER_SOFTWARE before it loads the app,
    in the master (preload) and, inherited, in every worker."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")


def guessing(config) -> bool:
    """True when the operator set neither RUNBASE_PUBLIC_URL nor RUNBASE_ALLOWED_HOSTS."""
    return not config.get("PUBLIC_URL") and config.get("ALLOWED_HOSTS") is None


def init_app(app: Flask) -> None:
    """Check every request's Host first; warn a production server (gunicorn) that runs
    with only the laptop defaults."""
    allowed = effective_hosts(app.config.get("ALLOWED_HOSTS"), app.config.get("PUBLIC_URL", ""))

    def check_host():
        return _check_host(allowed)

    # First of the app's before-request functions, whatever order extensions registered
    # theirs in: nothing may build a URL from a Host that has not been checked.
    app.before_request_funcs.setdefault(None, []).insert(0, check_host)
    if under_gunicorn() and guessing(app.config):
        app.logger.warning(UNSET_WARNING)


def _check_host(allowed: tuple[str, ...]):
    """400 for a Host this server does not answer to: the API envelope under /api/, the
    error page elsewhere."""
    if is_allowed(host_name(request.host), allowed):
        return None
    log.info("refused a request for host %r", request.host)
    if request.path.startswith("/api/"):
        raise HostNotAllowed(REFUSAL)
    abort(400, description=REFUSAL)
