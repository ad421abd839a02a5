"""API keys: creation (shown once), look-up by hash, listing and deletion."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import RunbaseError
from ..models import ApiKey, utcnow

KEY_PREFIX = "sk-"
#: Display prefix length: "sk-" plus a few characters, enough to tell keys apart.
DISPLAY_LENGTH = 10
#: How stale `last_used_at` may get before a request writes it again; saves a write per call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(full_key: str) -> str:
    """The SHA-256 hex digest stored instead of the key."""
    return hashlib.sha256(full_key.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    """Whether a string has the shape of a Runbase key (before any look-up)."""
    return value.startswith(KEY_PREFIX) and 20 <= len(value) <= 200


def create_key(session: Session, user_id: int, name: str) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never available again."""
    name = name.strip() or "Default key"
    if len(name) > 100:
        raise RunbaseError("Key names are at most 100 characters.", field="name")
    full_key = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=user_id, name=name, key_hash=hash_key(full_key),
                 prefix=full_key[:DISPLAY_LENGTH], ip_allowlist=[])
    session.add(key)
    session.flush()
    return key, full_key


def find_active_key(session: Session, full_key: str) -> ApiKey | None:
    """The enabled, undeleted key with this value, found by its hash (no `==` on secrets)."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(full_key)))
    if key is None or key.disabled or key.deleted_at is not None:
        return None
    return key


def touch(key: ApiKey) -> None:
    """Record use of a key, at most once per LAST_USED_RESOLUTION."""
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now


def list_keys(session: Session, user_id: int) -> list[ApiKey]:
    """The user's keys that are not deleted, newest first."""
    return list(session.scalars(select(ApiKey).where(
        ApiKey.user_id == user_id, ApiKey.deleted_at.is_(None)).order_by(ApiKey.id.desc())))


def delete_key(session: Session, user_id: int, key_id: int) -> bool:
    """Delete one of the user's keys; it stops working at once. False if not theirs."""
    key = session.get(ApiKey, key_id)
    if key is None or key.user_id != user_id or key.deleted_at is not None:
        return False
    key.deleted_at = utcnow()
    return True
