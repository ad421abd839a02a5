"""Request rate limits.

Runs endpoints: a moving window per API key id (`KeyRateLimiter`), so "N requests per M
seconds" holds over every M-second span, not just within aligned windows. Sign-in and
sign-up: Flask-Limiter per IP and per account, also on a moving window. Both keep their
counts in process memory, or in Redis when RUNBASE_REDIS_URL is set so limits hold across
gunicorn workers and machines.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string

from .api_hooks import is_hook, skip_on_api
from limits.strategies import MovingWindowRateLimiter

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
_KEY_LIMITER = "runbase.key_rate_limiter"


def init_app(app: Flask) -> None:
    """Bind the form limiter and the per-key limiter to the app with the configured storage."""
    storage_uri = app.config.get("REDIS_URL") or "memory://"
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage_uri)
    app.config.setdefault("RATELIMIT_STRATEGY", "moving-window")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
    _check_only_in_limited_views(app)
    skip_on_api(app, "after", is_hook(Limiter._Limiter__inject_headers))
    skip_on_api(app, "teardown", is_hook(limiter._Limiter__release_context))
    app.extensions[_KEY_LIMITER] = KeyRateLimiter(storage_uri)


def _check_only_in_limited_views(app: Flask) -> None:
    """Drop the check Flask-Limiter runs before every request of the app.

    We set no default, blueprint or meta limits: every form limit is a decorator
    (auth_rate_limit), and a decorated view checks its own limits when it is called. The
    app-wide hook would only look for limits that do not exist, on every API request, at
    about a tenth of a cached GET's CPU. Its after-request (conditional deductions,
    headers) and teardown hooks stay."""
    hooks = app.before_request_funcs.get(None, [])
    hooks[:] = [hook for hook in hooks if hook != limiter._check_request_limit]


def seconds_to_wait(reset_at: float, now: float | None = None) -> int:
    """Whole seconds a client must wait until `reset_at`, rounded up (at least 1), so that
    waiting exactly Retry-After seconds always gets the next request in."""
    now = time.time() if now is None else now
    return max(1, math.ceil(reset_at - now))


# --- per API key, on the runs endpoints ---------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One counted request: whether it is allowed, and the window it was counted in."""

    allowed: bool
    limit: int
    remaining: int
    #: Epoch seconds at which the oldest request in the window leaves it (a slot frees up).
    reset_at: float

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* (and Retry-After when refused), as the docs describe them."""
        headers = {"X-RateLimit-Limit": str(self.limit),
                   "X-RateLimit-Remaining": str(self.remaining),
                   "X-RateLimit-Reset": str(math.ceil(self.reset_at))}
        if not self.allowed:
            headers["Retry-After"] = str(seconds_to_wait(self.reset_at))
        return headers


class KeyRateLimiter:
    """A moving-window limit per API key id: every request within the last M seconds
    counts, so no M-second span ever holds more than N allowed requests."""

    def __init__(self, storage_uri: str):
        self._strategy = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, key_id: int, count: int, seconds: int) -> Verdict:
        """Count one request of key `key_id` against `count` per `seconds`."""
        item = RateLimitItemPerSecond(count, seconds)
        identity = ("runs", f"key:{key_id}")
        allowed = self._strategy.hit(item, *identity)
        reset_at, remaining = self._strategy.get_window_stats(item, *identity)
        return Verdict(allowed, count, max(remaining, 0), reset_at)


def key_rate_limiter(app: Flask | None = None) -> KeyRateLimiter:
    """The per-key limiter of `app` (default: the current app)."""
    return (app or current_app).extensions[_KEY_LIMITER]


# --- sign-in and sign-up (per IP and per account) ---------------------------------------------


def auth_limit() -> str:
    """The configured limit on sign-in/sign-up attempts (RUNBASE_AUTH_RATE_LIMIT)."""
    configured = current_app.config.get("AUTH_RATE_LIMIT")
    if configured is None:
        return "1 per second"  # Flask-Limiter reads it before exempt_when; never enforced
    count, seconds = configured
    return f"{count} per {seconds} second"


def auth_limit_off() -> bool:
    """RUNBASE_AUTH_RATE_LIMIT=off turns the sign-in/sign-up limits off."""
    return current_app.config.get("AUTH_RATE_LIMIT") is None


def client_ip_identity() -> str:
    """The client address (the socket's, or ProxyFix's with RUNBASE_TRUSTED_PROXIES)."""
    return "ip:" + (request.remote_addr or "unknown")


def form_email_identity() -> str:
    """The account a sign-in form targets, hashed (emails are not kept in Redis in clear).

    Normalised like accounts.normalize_email, so case or spaces don't reset the count.
    """
    email = request.form.get("email", "").strip().lower()
    return "email:" + hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()


def auth_rate_limit(*, on_breach, deduct_when=None):
    """Decorator: AUTH_RATE_LIMIT on a form's POSTs, counted per client IP and, separately,
    per typed email, so neither rotating addresses nor rotating accounts get around it.

    `deduct_when(response)` decides which answers count (e.g. only failed sign-ins);
    `on_breach(request_limit)` returns the 429 page. GET is never limited.
    """
    def decorate(view):
        for identity in (form_email_identity, client_ip_identity):
            view = limiter.limit(auth_limit, key_func=identity, methods=["POST"],
                                 exempt_when=auth_limit_off, deduct_when=deduct_when,
                                 on_breach=on_breach)(view)
        return view
    return decorate


def seconds_until_reset(request_limit) -> int:
    """Whole seconds until a breached form limit (a flask_limiter RequestLimit) lets
    requests in, rounded up."""
    return seconds_to_wait(request_limit.reset_at)
