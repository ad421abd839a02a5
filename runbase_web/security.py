"""Security headers on every response."""
from __future__ import annotations

import io

from flask import Flask, Response, abort, current_app, request

from .errors import InvalidQuery
from .responses import add_missing_headers

#: No inline script or style, no eval, nothing from other origins; media from our files.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def init_app(app: Flask) -> None:
    """Add the headers, and cookie flags that follow the scheme the app is served on."""
    # Assigned, not setdefault: Flask's defaults already hold these keys (SameSite None),
    # so setdefault would silently keep the weaker value.
    secure = (app.config.get("PUBLIC_URL") or "").startswith("https://")
    for cookie in ("SESSION_COOKIE", "REMEMBER_COOKIE"):
        app.config[f"{cookie}_HTTPONLY"] = True
        app.config[f"{cookie}_SAMESITE"] = "Lax"
        app.config[f"{cookie}_SECURE"] = secure
    # First of all: CSRF checks and the NUL check below read the body, under its limit.
    app.before_request_funcs.setdefault(None, []).insert(0, _apply_view_body_limit)
    app.before_request(_refuse_nul_characters)
    app.after_request(_add_headers)
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, app)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: Room for the multipart framing around a file, on top of a view's own body limit.
MULTIPART_SLACK = 64 * 1024


def body_limit(setting: str):
    """Decorator (outermost, below the route): the view takes bodies up to the size in
    app.config[setting], plus multipart framing, instead of RUNBASE_MAX_BODY_BYTES (which
    suits JSON, not image uploads)."""
    def mark(view):
        view.body_limit_setting = setting
        return view
    return mark


def _apply_view_body_limit():
    """This request's body limit, when its view declared its own (see body_limit)."""
    view = current_app.view_functions.get(request.endpoint or "")
    setting = getattr(view, "body_limit_setting", None)
    if setting is not None:
        request.max_content_length = current_app.config[setting] + MULTIPART_SLACK


def _refuse_nul_characters():
    """No NUL character in URL parts, query strings or form fields, anywhere.

    PostgreSQL can neither store nor compare text containing NUL: one in a looked-up
    name (a run id, a file name, an email) would fail the query with a 500 instead of a
    plain "not found". No legitimate input contains one.
    """
    if any("\x00" in value for value in (request.view_args or {}).values()
           if isinstance(value, str)):
        abort(404)
    # Parse only what was sent: most API calls have neither a query string nor a form.
    query_nul = bool(request.query_string) and _has_nul(request.args)
    if query_nul and request.path.startswith("/api/"):
        raise InvalidQuery("Query parameters may not contain a NUL character.")
    form_sent = bool(request.environ.get("CONTENT_TYPE")) and request.mimetype in _FORM_TYPES
    if query_nul or (form_sent and _has_nul(request.form)):
        abort(400)


def _has_nul(fields) -> bool:
    # A multipart part whose name Werkzeug cannot parse has the name None.
    return any("\x00" in (key or "") or "\x00" in (value or "")
               for key, value in fields.items(multi=True))


_EVERY_RESPONSE = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))
_PAGES = (("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("X-Frame-Options", "DENY"))


def _add_headers(response: Response) -> Response:
    add_missing_headers(response.headers, _EVERY_RESPONSE)
    if not request.path.startswith("/api/"):
        add_missing_headers(response.headers, _PAGES)
    return response


class ChunkedBodyLimit:
    """WSGI middleware: MAX_CONTENT_LENGTH for bodies sent without Content-Length.

    For a chunked body Werkzeug stops reading at MAX_CONTENT_LENGTH and hands the view
    the truncated bytes as if they were the whole body (a cut-off form or JSON). Here
    the body is read up to one byte past the limit first: when it fits it is passed on
    with its length, and when it doesn't it is declared one byte too long, so the first
    read raises 413 inside the app and the usual error pages (HTML or the API envelope)
    answer.
    """

    def __init__(self, wsgi_app, app: Flask):
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ, start_response):
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if (limit is not None and not environ.get("CONTENT_LENGTH")
                and environ.get("wsgi.input_terminated")):
            body = _read_up_to(environ["wsgi.input"], limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            # Now a plain body of known length (Werkzeug ignores the length while the
            # request still says chunked).
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ.pop("wsgi.input_terminated", None)
        return self.wsgi_app(environ, start_response)


def _read_up_to(stream, size: int) -> bytes:
    """Up to `size` bytes (fewer only at the end of the stream)."""
    chunks, total = [], 0
    while total < size:
        data = stream.read(size - total)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)
