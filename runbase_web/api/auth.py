"""Bearer-key authentication for /api/v1; the session cookie is never accepted here, except
by GET /api/v1/files/<name>, which shows owners their uploads in the browser (files.py)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from ..errors import InvalidApiKey, IpNotAllowed, MissingApiKey, RateLimited
from ..extensions import db, reading_only, writing
from ..ratelimit import key_rate_limiter
from ..responses import add_missing_headers
from ..services import keys
from .blueprint import bp


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id and its owner's id."""

    key_id: int
    user_id: int


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(keys.KEY_PREFIX):
        raise MissingApiKey("Send your API key as 'Authorization: Bearer sk-...'.")
    return token


def _ip_allowed(allowlist: tuple[str, ...], address: str | None) -> bool:
    if not allowlist:
        return True
    try:
        client = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    # A dual-stack socket reports IPv4 callers as ::ffff:a.b.c.d; the allowlist holds a.b.c.d.
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    return any(client == ipaddress.ip_address(allowed) for allowed in allowlist)


def authenticate_request() -> Caller:
    """The caller of this request, or a missing/invalid key or IP error.

    Runs in the request's own transaction (no commit here): a GET is then one read
    transaction, a create one write transaction. Look-ups are cached for
    KEY_CACHE_SECONDS, so most requests send no query for the key at all.
    """
    token = _bearer_token()
    # A request that only reads looks the key up on its Core connection (the one its
    # view reads with); one that writes, in the session its work commits in.
    database = db.connection if reading_only() else db.session
    key = keys.authenticate(database, token, max_age=current_app.config["KEY_CACHE_SECONDS"])
    if key is None:
        raise InvalidApiKey("This API key is not valid; it may have been disabled or deleted.")
    if not _ip_allowed(key.ip_allowlist, request.remote_addr):
        raise IpNotAllowed(f"This API key does not accept requests from {request.remote_addr}.")
    if keys.touch_due(key):
        _record_use(token, key)
    return Caller(key.id, key.user_id)


def _record_use(token: str, key: keys.KeyIdentity) -> None:
    """Write the key's last use (once a minute at most) in a short transaction of its own.

    Not in the request's transaction: a create locks the user's row before the key's
    (ledger.charge_for_run), and locking the key's row first here would let two creates
    deadlock; and a request that only reads must never hold SQLite's write lock.
    """
    db.session.rollback()  # end the look-up's read transaction before writing
    with writing():
        keys.record_use(db.session, token, key)
        db.session.commit()


class KeyRateLimited(RateLimited):
    """429 for a key over RUNBASE_RATE_LIMIT; carries the window's headers."""

    def __init__(self, verdict):
        super().__init__("Rate limit exceeded")
        self.headers = verdict.headers()


def _count_request(caller: Caller) -> None:
    """Count this request against its key's budget (RUNBASE_RATE_LIMIT); 429 when spent.

    Keyed on the authenticated key's id, so every spelling of the Authorization header
    that authenticates as the same key shares one budget.
    """
    configured = current_app.config["RATE_LIMIT"]
    if configured is None:
        return
    verdict = key_rate_limiter().hit(caller.key_id, *configured)
    g.rate_limit_verdict = verdict
    if not verdict.allowed:
        raise KeyRateLimited(verdict)


@bp.after_request
def _rate_limit_headers(response):
    """Every answer to a counted request says where its key stands in the window."""
    verdict = g.pop("rate_limit_verdict", None)
    if verdict is not None:
        add_missing_headers(response.headers, verdict.headers().items())
    return response


def require_key(view):
    """Decorator: authenticate the request's key, count it against the key's rate limit,
    and expose the caller as `g.caller`."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        g.caller = authenticate_request()
        _count_request(g.caller)
        return view(*args, **kwargs)
    return wrapper
