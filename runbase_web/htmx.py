"""Tiny htmx helpers, so views never read raw `HX-*` header strings themselves.

Modelled on django-htmx's middleware and http helpers; only what the pages use.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from flask import Response, make_response, redirect, render_template, request
from flask.typing import ResponseReturnValue


def is_htmx() -> bool:
    """True when htmx made this request (it sends `HX-Request: true`)."""
    return request.headers.get("HX-Request") == "true"


def hx_redirect(url: str, status: int = 200) -> Response:
    """Make htmx load `url` as a full page (a 302 would be followed by the XHR and the
    page swapped into a fragment)."""
    response = make_response("", status)
    response.headers["HX-Redirect"] = url
    return response


def vary_on_htmx(response: Response) -> Response:
    """Mark a response that differs between htmx and plain requests, so caches keep both."""
    response.vary.add("HX-Request")
    return response


def render_varying(template: str, status: int = 200, **context) -> Response:
    """A rendered page or fragment at a URL that answers htmx and plain requests
    differently, marked so caches keep both."""
    return vary_on_htmx(make_response(render_template(template, **context), status))


def fragment_or_redirect(page_url: str, render: Callable[[], ResponseReturnValue], *,
                         redirect_status: int = 303) -> Response:
    """What `render()` makes for htmx; any other request is sent to the full page at
    `page_url` instead (a poll URL opened in a tab, a form posted without JavaScript:
    a bare fragment is no page to show). `render` is called only for htmx."""
    if not is_htmx():
        return vary_on_htmx(redirect(page_url, redirect_status))
    return vary_on_htmx(make_response(render()))


def current_page() -> str | None:
    """Path and query of the page that made this htmx request, if it is on this host.

    A fragment's own URL (e.g. POST /playground/runs) is no place to come back to; the
    page the person was looking at is.
    """
    url = request.headers.get("HX-Current-URL", "")
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not url or parts.netloc != request.host:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
