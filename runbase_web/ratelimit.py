"""Request rate limits (Flask-Limiter): per API key on the runs endpoints, per IP and
per account on sign-in and sign-up. In-process by default; a shared Redis when
RUNBASE_REDIS_URL is set, so limits hold across gunicorn workers and machines."""
from __future__ import annotations

import hashlib

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
