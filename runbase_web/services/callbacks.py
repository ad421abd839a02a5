"""Provider callbacks: the URL a provider is asked to call when a run's job ends, and what
happens when it does.

Replicate, fal and an upstream Runbase can POST the outcome of a job instead of being
polled for it. When RUNBASE_PUBLIC_URL is set, the worker asks them to, at

    <public URL>/callbacks/<adapter>/<run id>/<token>

where the token is an HMAC of the adapter and run id under the server's secret key: an
unguessable address per run (defence in depth; the provider's signature is the real check).

A callback is acted on only when, in this order:

1. the URL's token is right (else 404) and the provider's callbacks can be checked here;
2. its signature verifies as the provider documents it, within the timestamp tolerance
   (the adapter's `verify_callback`; unsigned, stale or forged: 4xx);
3. it is about the job of that run: the run uses that adapter, is still active, and its
   upstream id is the one the callback names (or not committed yet: a job that ended before
   the worker had written its id down). Anything else (unknown or ended run, another job)
   is answered 200 so the provider stops retrying, and nothing is recorded;
4. its message id was not acted on before (a replay or duplicate delivery: 200, ignored).

Acting on it stores the verified body on the run (`Run.callback_body`) and makes the run
due now, waking the workers; the worker reads the body through the adapter's `called_back`
as if a poll had answered, and ends the run through its usual exactly-once path. So a
callback never ends a run by itself: duplicates, late callbacks and a callback racing a
poll or a cancel all meet the same conditional updates as any worker step.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy import case, delete, literal, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import ACTIVE_STATUSES, ProviderCallback, Run, utcnow
from ..providers import registry
from ..urls import absolute_url
from ..webhook_signatures import TOLERANCE_SECONDS, SignatureError
from .run_creation import notify_workers

log = logging.getLogger(__name__)

#: Where the callback endpoints live (the blueprint's url_prefix).
PATH_PREFIX = "/callbacks"
#: Hex characters of the URL token (128 bits).
TOKEN_LENGTH = 32
#: The longest message id remembered (the column holds the adapter name too).
MAX_MESSAGE_ID = 250
#: Message ids are kept this long: past it a replay fails the timestamp check anyway
#: (a timestamp up to the tolerance ahead of our clock stays valid for twice the tolerance).
SEEN_RETENTION = timedelta(seconds=2 * TOLERANCE_SECONDS + 60)
#: Old message ids are deleted at most this often per process (a cheap ranged DELETE, but
#: not one per callback when thousands arrive).
PRUNE_EVERY_SECONDS = 60.0

#: What `receive` did with a callback; each is answered 200.
ACCEPTED, IGNORED, DUPLICATE = "accepted", "ignored", "duplicate"

_prune_lock = threading.Lock()
_last_prune = [float("-inf")]


class CallbackRefused(Exception):
    """A callback not to act on, with the HTTP status and code to answer it with."""

    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


# --- the URL ---------------------------------------------------------------------------------


def callback_token(secret_key: str, adapter: str, run_id: str) -> str:
    """The URL token of a run's callbacks from one adapter: HMAC-SHA256 under the server's
    secret key, so it is unguessable yet needs no storage."""
    digest = hmac.new(secret_key.encode(), f"runbase-callback:{adapter}:{run_id}".encode(),
                      hashlib.sha256).hexdigest()
    return digest[:TOKEN_LENGTH]


def callback_url(*, public_url: str, secret_key: str, env: Mapping[str, str],
                 adapter: str | None, run_id: str) -> str | None:
    """Where `adapter`'s provider should call back about the run, or None to poll only:
    no public URL (nobody could reach us), or an adapter whose callbacks can't be asked
    for or checked here (no such support, or, upstream, no webhook secret)."""
    adapter_class = registry.adapter_class(adapter) if adapter else None
    if not public_url or adapter_class is None or not adapter_class.CALLBACKS \
            or not adapter_class.callbacks_available(env):
        return None
    token = callback_token(secret_key, adapter, run_id)
    return absolute_url(public_url, f"{PATH_PREFIX}/{adapter}/{run_id}/{token}")


# --- receiving -------------------------------------------------------------------------------


def receive(session: Session, *, adapter: str, run_id: str, token: str,
            headers: Mapping[str, str], body: bytes, env: Mapping[str, str], secret_key: str,
            now: float | None = None) -> str:
    """Check one callback and, if it is about an active run's job, hand it to the worker
    (module docstring). Returns ACCEPTED, IGNORED or DUPLICATE, having left the change (if
    any) in the caller's transaction with the workers' wake-up; raises CallbackRefused."""
    now = time.time() if now is None else now
    adapter_class = registry.adapter_class(adapter)
    if adapter_class is None or not adapter_class.CALLBACKS or not hmac.compare_digest(
            token.encode(), callback_token(secret_key, adapter, run_id).encode()):
        raise CallbackRefused("No callback is expected at this URL.", code="not_found", status=404)
    if not adapter_class.callbacks_available(env):
        raise CallbackRefused(f"Callbacks from the {adapter} adapter can't be checked on this "
                              "server.", code="not_found", status=404)
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        callback = adapter_class.verify_callback(env, lowered, body, now)
    except SignatureError as error:
        raise CallbackRefused(error.message, code=error.code, status=error.status) from None
    if len(callback.message_id) > MAX_MESSAGE_ID:
        raise CallbackRefused("The callback's message id is too long.", code="bad_body",
                              status=400)
    at = utcnow()
    if not _hand_to_worker(session, adapter, run_id, callback.upstream_id, callback.body, at):
        session.rollback()
        return IGNORED
    session.add(ProviderCallback(id=f"{adapter}:{callback.message_id}", received_at=at))
    try:
        session.flush()
    except IntegrityError:
        # Acted on before (or right now, by a concurrent copy): this one changes nothing.
        session.rollback()
        return DUPLICATE
    notify_workers(session)
    _prune_now_and_then(session, at)
    return ACCEPTED


def _hand_to_worker(session: Session, adapter: str, run_id: str, upstream_id: str, body: dict,
                    at: datetime) -> bool:
    """Store a verified callback's body on the run and make it due now; False (nothing
    changed) unless the run is active, on `adapter`, and its job is `upstream_id`.

    A run whose upstream id is not committed yet is the worker's, inside the provider's
    create: the body waits for it and the due time stays; the worker's release makes the
    run due at once when a body is waiting (worker/claim.release), and its next lease
    takes the body.
    """
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.adapter == adapter, Run.status.in_(ACTIVE_STATUSES),
               or_(Run.upstream_id.is_(None), Run.upstream_id == upstream_id))
        .values(callback_body=body,
                # Typed as the column, so the time is stored as naive UTC like every other.
                next_check_at=case((Run.upstream_id.is_(None), Run.next_check_at),
                                   else_=literal(at, Run.next_check_at.type))))
    return result.rowcount == 1


def _prune_now_and_then(session: Session, at: datetime) -> None:
    """Delete remembered message ids past SEEN_RETENTION, at most every PRUNE_EVERY_SECONDS."""
    with _prune_lock:
        if time.monotonic() - _last_prune[0] < PRUNE_EVERY_SECONDS:
            return
        _last_prune[0] = time.monotonic()
    prune_seen(session, at)


def prune_seen(session: Session, at: datetime | None = None) -> int:
    """Forget message ids older than SEEN_RETENTION (their replays are stale by now);
    returns how many."""
    cutoff = (at or utcnow()) - SEEN_RETENTION
    return session.execute(delete(ProviderCallback)
                           .where(ProviderCallback.received_at < cutoff)).rowcount
