"""Absolute URLs: one rule for joining a base and a site path, and the base this server
is reached at (RUNBASE_PUBLIC_URL when set, else this request's host)."""
from flask import current_app, has_request_context, request


def absolute_url(base_url: str, path: str) -> str:
    """The site path `path` ("/files/...", "/s/<token>") on `base_url`.

    An empty base leaves the path site-relative: outside a request, with no
    RUNBASE_PUBLIC_URL, nobody knows the host.
    """
    return base_url.rstrip("/") + path


def public_base_url() -> str:
    """The scheme and host outputs are served from, without a trailing slash."""
    configured = current_app.config.get("PUBLIC_URL")
    if configured:
        return configured
    if has_request_context():
        # The Host header as sent (hosts.py has checked it), not request.host_url, which
        # decodes IDNA and percent-escapes on every call: a URL for clients stays ASCII.
        return f"{request.scheme}://{request.host}"
    return ""
