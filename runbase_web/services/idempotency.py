"""Idempotent run creation: same key + same body → the original run, charged once.

The record is inserted in the create transaction. A concurrent duplicate either
finds it (SQLite serialises writers) or collides on UNIQUE(user_id, key) after
the first commits (PostgreSQL); create_once then rolls back and replays.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import RunbaseError
from ..models import IdempotencyRecord, Run, utcnow

#: How long a key is remembered (Stripe keeps them at least 24 h).
RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(RunbaseError):
    """Same key, different request."""

    status = 422
    code = "idempotency_key_reused"


class InvalidIdempotencyKey(RunbaseError):
    """A key that is empty or too long."""

    status = 400
    code = "invalid_idempotency_key"


def fingerprint(body: dict) -> str:
    """A stable hash of the request body (key order and spacing don't matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a body is checked for lone surrogates before this, but a hash must never fail.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def check_key(key: str) -> str:
    """The key if it is usable, else InvalidIdempotencyKey."""
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
    if "\x00" in key:  # PostgreSQL can neither store nor compare text with NUL: it was a 500
        raise InvalidIdempotencyKey("Idempotency-Key may not contain a NUL character.")
    return key


def replay(session: Session, user_id: int, key: str, body_fingerprint: str) -> Run | None:
    """The run an earlier request with this key created, or None if the key is new.

    Raises IdempotencyKeyReused when the earlier request had a different body.
    """
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key,
        IdempotencyRecord.created_at < utcnow() - RETENTION))
    record = session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key))
    if record is None:
        return None
    if record.fingerprint != body_fingerprint:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body.")
    return session.get(Run, record.run_id)


def remember(session: Session, user_id: int, key: str, body_fingerprint: str, run: Run) -> None:
    """Record the key for the run just created, in the same transaction."""
    session.add(IdempotencyRecord(user_id=user_id, key=key, fingerprint=body_fingerprint,
                                  run_id=run.id, created_at=utcnow()))


def create_once(session: Session, *, user_id: int, key: str | None, body: dict,
                create: Callable[[], Run]) -> tuple[Run, bool]:
    """Create a run with `create` and commit; with an Idempotency-Key, only the first
    time: returns (run, replayed).

    This commits itself, unlike other services: only the commit can tell that a
    concurrent request with the same key won, and then its run is the answer.
    """
    if key is None:
        run = create()
        session.commit()
        return run, False
    key = check_key(key)
    body_fingerprint = fingerprint(body)
    earlier = replay(session, user_id, key, body_fingerprint)
    if earlier is not None:
        return earlier, True
    run = create()
    remember(session, user_id, key, body_fingerprint, run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return replay(session, user_id, key, body_fingerprint), True
    return run, False
