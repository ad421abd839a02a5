"""Request ids and log output.

Every request gets an id: the caller's `X-Request-Id` when it is short and made of safe
characters (so a load balancer's id follows the request through), else a fresh one. It
is echoed in the response's `X-Request-Id`, quoted in error messages, and carried by one
log record per request (logger `runbase.requests`: method, path, status, duration).

RUNBASE_LOG_FORMAT=json makes every log line one JSON object on stderr, request records
and everything logged while a request is served carrying `request_id`. The default,
`text`, leaves logging as it always was: `python app.py` prints Werkzeug's plain access
lines, and the request records go wherever the operator's logging sends them.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from datetime import datetime, timezone

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-Id"
#: What a caller's id may look like; anything else is replaced, never logged.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FORMATS = ("text", "json")
request_log = logging.getLogger("runbase.requests")
#: The attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def init_app(app: Flask) -> None:
    """Give every request an id and a log record; with JSON logs, set up the handler."""
    app.before_request(_start)
    app.after_request(_finish)
    if app.config.get("LOG_FORMAT") == "json":
        use_json_logs()


def current_request_id() -> str:
    """The id of the request being served (a fresh one outside a request)."""
    if has_request_context():
        if "request_id" not in g:
            g.request_id = _incoming_id()
        return g.request_id
    return secrets.token_hex(8)


#: Where WSGI puts the header (read directly: it is looked up on every request).
_HEADER_ENVIRON_KEY = "HTTP_" + HEADER.upper().replace("-", "_")


def _incoming_id() -> str:
    given = request.environ.get(_HEADER_ENVIRON_KEY, "")
    return given if SAFE_REQUEST_ID.match(given) else secrets.token_hex(8)


def _start() -> None:
    g.request_started = time.perf_counter()
    current_request_id()


def _finish(response: Response) -> Response:
    request_id = current_request_id()
    response.headers[HEADER] = request_id
    if not request_log.isEnabledFor(logging.INFO):
        return response  # nobody listens: don't build the record
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
    path = _loggable_path()
    request_log.info("%s %s %s %sms", request.method, path, response.status_code, duration_ms,
                     extra={"request_id": request_id, "method": request.method, "path": path,
                            "status": response.status_code, "duration_ms": duration_ms,
                            "remote_addr": request.remote_addr})
    return response


def _loggable_path() -> str:
    """The path, without query string, with URL tokens (shared links, provider callbacks)
    masked: they are credentials, and logs travel further than the database."""
    path = request.path
    token = (request.view_args or {}).get("token")
    if isinstance(token, str) and token:
        path = path.replace(token, "[token]")
    return path


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's extra
    fields, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc)
                 .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update({key: value for key, value in vars(record).items()
                      if key not in _STANDARD and not key.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to records logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


def use_json_logs(stream=None, level: int = logging.INFO) -> logging.Handler:
    """Send every log record to `stream` (stderr) as a JSON line, replacing the root
    logger's handlers; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Werkzeug's own access line would repeat the request record in another format.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return handler
