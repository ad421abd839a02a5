"""Request rate limits (Flask-Limiter): per API key on the runs endpoints, per IP and
per account on sign-in and sign-up. In-process by default; a shared Redis when
RUNBASE_REDIS_URL is set, so limits hold across gunicorn workers and machines."""
from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)


def init_app(app: Flask) -> None:
    """Bind the limiter to the app with the configured storage."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)


def api_key_identity() -> str:
    """Who a runs request counts against: its key (hashed, never stored in clear)."""
    header = request.headers.get("Authorization", "")
    if header:
        return "key:" + hashlib.sha256(header.encode()).hexdigest()
    return "ip:" + (request.remote_addr or "unknown")


def runs_limit() -> str:
    """The configured per-key limit, e.g. 20 per 10 seconds."""
    configured = current_app.config["RATE_LIMIT"]
    if configured is None:
        # Flask-Limiter reads the value before it asks exempt_when; never enforced.
        return "1 per second"
    count, seconds = configured
    return f"{count} per {seconds} second"


def runs_limit_off() -> bool:
    """RUNBASE_RATE_LIMIT=off turns the per-key limit off."""
    return current_app.config["RATE_LIMIT"] is None


#: One budget shared by create and get, as the hosted service counts them together.
runs_rate_limit = limiter.shared_limit(runs_limit, scope="runs", key_func=api_key_identity,
                                       exempt_when=runs_limit_off)


# --- sign-in and sign-up (reliability.md S4) ---------------------------------------------


def auth_limit() -> str:
    """The configured limit on sign-in/sign-up attempts (RUNBASE_AUTH_RATE_LIMIT)."""
    configured = current_app.config.get("AUTH_RATE_LIMIT")
    if configured is None:
        return "1 per second"  # read before exempt_when, as for runs_limit; never enforced
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
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


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
    """Whole seconds until a breached limit (a flask_limiter RequestLimit) lets requests in."""
    return max(1, math.ceil(request_limit.reset_at - time.time()))
