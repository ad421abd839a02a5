"""API keys: creation (shown once), look-up by hash, listing, settings and deletion."""
from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, event, or_, select, update
from sqlalchemy.orm import Session

from ..errors import RunbaseError
from ..models import ApiKey, utcnow
from ..money import MICROS_PER_USD, format_usd, parse_dollars, plain_dollars

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


#: Largest id an api_keys row can have (a 32-bit INTEGER column).
MAX_ID = 2**31 - 1
#: Longest key name (the column's size).
NAME_MAX = 100
#: Most addresses one key's allowlist may hold.
MAX_ALLOWED_IPS = 10
#: Highest lifetime spend limit; anything above is surely a typo.
MAX_SPEND_LIMIT_MICROS = 1_000_000 * MICROS_PER_USD
_LIST_SEPARATORS = re.compile(r"[\s,;]+")


def check_name(name: str, *, default: str | None = None) -> str:
    """A key name, trimmed; empty becomes `default` (or is refused without one)."""
    name = name.strip() or (default or "")
    if not name:
        raise RunbaseError("Give the key a name.", field="name")
    if len(name) > NAME_MAX:
        raise RunbaseError(f"Key names are at most {NAME_MAX} characters.", field="name")
    return name


def create_key(session: Session, user_id: int, name: str) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never available again."""
    name = check_name(name, default="Default key")
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


# --- authenticating API requests ----------------------------------------------------------


@dataclass(frozen=True)
class KeyIdentity:
    """What authenticating a request needs to know about an active key."""

    id: int
    user_id: int
    ip_allowlist: tuple[str, ...]
    last_used_at: datetime | None


class KeyCache:
    """Recent look-ups of key hashes (active keys and unknown ones), per database.

    A key that is disabled, deleted or edited through this process is forgotten when that
    change commits (see _forget_changed_keys); other processes notice within the
    `max_age` each look-up allows (KEY_CACHE_SECONDS, 5 s by default). A generation
    number keeps a look-up that raced such a change from caching what it read before.
    """

    #: Unknown hashes are cached too (a flood of made-up keys costs no queries); the
    #: cache starts over when it holds this many, so it can't grow without bound.
    MAX_ENTRIES = 10_000

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyIdentity | None]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, digest: str, max_age: float) -> tuple[bool, KeyIdentity | None]:
        """(found, identity): identity is None for a hash known not to be an active key."""
        entry = self._entries.get(digest)
        if entry is None or self._clock() - entry[0] >= max_age:
            return False, None
        return True, entry[1]

    def put(self, digest: str, identity: KeyIdentity | None, generation: int) -> None:
        """Remember a look-up made at `generation`, unless keys changed since."""
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (self._clock(), identity)

    def forget_all(self) -> None:
        """Drop every entry (a key changed: which hash it had is not known here)."""
        with self._lock:
            self.generation += 1
            self._entries.clear()


_caches: dict[str, KeyCache] = {}
_caches_by_engine: "weakref.WeakKeyDictionary[Engine, KeyCache]" = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def key_cache(engine: Engine) -> KeyCache:
    """The process's key cache for the database `engine` points at (engines of several
    apps on one database share it)."""
    cache = _caches_by_engine.get(engine)
    if cache is None:
        name = engine.url.render_as_string(hide_password=True)
        with _caches_lock:
            cache = _caches.setdefault(name, KeyCache())
        _caches_by_engine[engine] = cache  # rendering the URL costs more than the look-up
    return cache


def _engine_of(database: Session | Connection) -> Engine:
    return database.engine if isinstance(database, Connection) else database.get_bind()


@event.listens_for(Session, "after_flush")
def _note_changed_keys(session: Session, _flush_context) -> None:
    if any(isinstance(row, ApiKey) for row in (*session.dirty, *session.deleted)):
        session.info["api_keys_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_changed_keys(session: Session) -> None:
    # After the commit, not the flush: until then other requests must still see the old
    # key, and a rollback must not leave the cache emptied for nothing (harmless anyway).
    if session.info.pop("api_keys_changed", False):
        key_cache(session.get_bind()).forget_all()


@event.listens_for(Session, "after_rollback")
def _drop_changed_mark(session: Session) -> None:
    session.info.pop("api_keys_changed", None)


def authenticate(database: Session | Connection, full_key: str, *,
                 max_age: float) -> KeyIdentity | None:
    """The active key with this value, from the cache when looked up less than `max_age`
    seconds ago, else from the database (by its hash); None when there is no such key."""
    if not looks_like_key(full_key):
        return None
    digest = hash_key(full_key)
    cache = key_cache(_engine_of(database))
    found, identity = cache.get(digest, max_age)
    if found:
        return identity
    generation = cache.generation
    row = database.execute(
        select(ApiKey.id, ApiKey.user_id, ApiKey.ip_allowlist, ApiKey.last_used_at)
        .where(ApiKey.key_hash == digest, ApiKey.disabled.is_(False),
               ApiKey.deleted_at.is_(None))).first()
    identity = None if row is None else KeyIdentity(
        row.id, row.user_id, tuple(row.ip_allowlist or ()), row.last_used_at)
    cache.put(digest, identity, generation)
    return identity


def touch_due(identity: KeyIdentity) -> bool:
    """Whether the key's `last_used_at` is old enough to be written again."""
    last = identity.last_used_at
    return last is None or utcnow() - last > LAST_USED_RESOLUTION


def record_use(session: Session, full_key: str, identity: KeyIdentity) -> None:
    """Write the key's `last_used_at` (in the caller's transaction), at most once per
    LAST_USED_RESOLUTION even across processes, and let the cache know."""
    now = utcnow()
    session.execute(update(ApiKey).where(
        ApiKey.id == identity.id,
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION))
        .values(last_used_at=now).execution_options(synchronize_session=False))
    cache = key_cache(session.get_bind())
    cache.put(hash_key(full_key), replace(identity, last_used_at=now), cache.generation)


def touch(key: ApiKey) -> None:
    """Record use of a key, at most once per LAST_USED_RESOLUTION."""
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now


def get_key(session: Session, user_id: int, key_id: int) -> ApiKey | None:
    """One of the user's undeleted keys, or None (also for other users' keys)."""
    if not 0 < key_id <= MAX_ID:
        return None  # a URL's id beyond the column's range is simply not a key
    key = session.get(ApiKey, key_id)
    if key is None or key.user_id != user_id or key.deleted_at is not None:
        return None
    return key


def list_keys(session: Session, user_id: int) -> list[ApiKey]:
    """The user's keys that are not deleted, newest first."""
    return list(session.scalars(select(ApiKey).where(
        ApiKey.user_id == user_id, ApiKey.deleted_at.is_(None)).order_by(ApiKey.id.desc())))


def delete_key(session: Session, user_id: int, key_id: int) -> bool:
    """Delete one of the user's keys; it stops working at once. False if not theirs."""
    key = get_key(session, user_id, key_id)
    if key is None:
        return False
    key.deleted_at = utcnow()
    return True


# --- settings ----------------------------------------------------------------------------


class KeySettingsError(RunbaseError):
    """Key settings that can't be saved; `errors` maps each bad field to its message."""

    status = 422
    code = "invalid_input"

    def __init__(self, errors: dict[str, str]):
        super().__init__(next(iter(errors.values())), field=next(iter(errors)))
        self.errors = errors


@dataclass(frozen=True)
class KeySettings:
    """What the edit form sets on a key, parsed and normalised."""

    name: str
    ip_allowlist: list[str]
    spend_limit_micros: int | None


def normalize_ip(text: str) -> str:
    """One allowlist entry in canonical form; IPv4-mapped IPv6 becomes plain IPv4.

    Single addresses only: the API compares the caller's address for equality, so a CIDR
    range is refused here rather than stored and silently never matched.
    """
    if "/" in text:
        raise ValueError(f"{text} is a range; list single addresses (ranges like "
                         "10.0.0.0/24 aren't supported).")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text} is not an IPv4 or IPv6 address.") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            raise ValueError(f"{text} has a zone (%…); leave it out.")
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    return str(address)


def parse_ip_allowlist(text: str) -> list[str]:
    """The allowlist typed in the form (one per line, or separated by commas or spaces):
    validated, normalised, duplicates dropped, at most MAX_ALLOWED_IPS."""
    addresses: list[str] = []
    for entry in filter(None, _LIST_SEPARATORS.split(text)):
        try:
            address = normalize_ip(entry)
        except ValueError as error:
            raise RunbaseError(str(error), field="ip_allowlist") from None
        if address not in addresses:
            addresses.append(address)
    if len(addresses) > MAX_ALLOWED_IPS:
        raise RunbaseError(f"A key accepts at most {MAX_ALLOWED_IPS} addresses; "
                           f"you listed {len(addresses)}.", field="ip_allowlist")
    return addresses


def parse_spend_limit(text: str) -> int | None:
    """A lifetime limit typed in dollars and cents ("25.50") as micro-USD; empty = none."""
    if not text.strip():
        return None
    return parse_dollars(text, field="spend_limit", decimals=2,
                         maximum_micros=MAX_SPEND_LIMIT_MICROS)


def parse_settings(name: str, ip_allowlist: str, spend_limit: str) -> KeySettings:
    """Parse the whole edit form, collecting every field's error at once."""
    errors: dict[str, str] = {}
    values = {}
    for field, parse, text in (("name", check_name, name),
                               ("ip_allowlist", parse_ip_allowlist, ip_allowlist),
                               ("spend_limit", parse_spend_limit, spend_limit)):
        try:
            values[field] = parse(text)
        except RunbaseError as error:
            errors[error.field or field] = error.message
    if errors:
        raise KeySettingsError(errors)
    return KeySettings(values["name"], values["ip_allowlist"], values["spend_limit"])


def update_settings(session: Session, key: ApiKey, settings: KeySettings) -> None:
    """Save a key's name, allowlist and limit. The limit is set by a conditional UPDATE,
    so it is never below what the key has spent, even with runs being created meanwhile."""
    if settings.spend_limit_micros is not None:
        lowered = session.execute(
            update(ApiKey).where(ApiKey.id == key.id,
                                 ApiKey.spent_micros <= settings.spend_limit_micros)
            .values(spend_limit_micros=settings.spend_limit_micros)
            .execution_options(synchronize_session=False))
        if lowered.rowcount != 1:
            session.refresh(key)
            raise KeySettingsError({"spend_limit": (
                f"This key has already spent {format_usd(key.spent_micros)}; "
                "the limit can't be lower than that.")})
    else:
        key.spend_limit_micros = None
    key.name = settings.name
    key.ip_allowlist = list(settings.ip_allowlist)
    session.flush()
    session.refresh(key)


def set_disabled(session: Session, user_id: int, key_id: int, disabled: bool) -> ApiKey | None:
    """Disable or re-enable one of the user's keys; None if it is not theirs.

    A disabled key stops authenticating at once; runs it already started finish normally.
    """
    key = get_key(session, user_id, key_id)
    if key is not None:
        key.disabled = disabled
    return key


def limit_text(micros: int | None) -> str:
    """A stored limit as the form shows it ("25.50"), or "" for no limit."""
    if micros is None:
        return ""
    return plain_dollars(micros)


def remaining_limit(key: ApiKey) -> int | None:
    """What the key may still spend under its limit, or None without a limit."""
    if key.spend_limit_micros is None:
        return None
    return max(key.spend_limit_micros - key.spent_micros, 0)
