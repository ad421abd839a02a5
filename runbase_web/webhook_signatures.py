"""Checking the signatures of callbacks that providers send us (incoming webhooks).

Two schemes, each as its senders document it:

* Standard Webhooks (Replicate, and an upstream Runbase, whose own webhooks use it):
  headers `webhook-id`, `webhook-timestamp` and `webhook-signature`, the last holding one
  or more space-separated `v1,<base64 HMAC-SHA256>` entries over
  `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64-decoded part of a
  `whsec_...` secret.
* Ed25519 over a message the provider defines (fal), checked against the public keys of a
  JSON Web Key Set (`OKP` keys on the `Ed25519` curve, the key in base64url `x`).

Both refuse a timestamp more than TOLERANCE_SECONDS away from our clock, so a captured
callback cannot be replayed later; replays inside that window are the receiver's to catch
(it remembers the message ids it acted on, see services/callbacks.py).

Keys fetched from a provider are cached (KeyCache): a signature that fails with cached
keys fetches them again, but at most every REFETCH_SECONDS, so forged callbacks cannot make
us ask the provider on every request.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from typing import Any, Callable, Iterable, Mapping, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: Standard Webhooks and fal both ask receivers to refuse timestamps further off than 5 min.
TOLERANCE_SECONDS = 300
#: A failed check fetches the keys again at most this often (keys rotate; forgeries must
#: not turn into a request to the provider each).
REFETCH_SECONDS = 60.0
SECRET_PREFIX = "whsec_"
_TIMESTAMP = re.compile(r"\d{1,12}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")

K = TypeVar("K")
T = TypeVar("T")


class SignatureError(Exception):
    """A callback that must not be acted on. `status` is the HTTP answer for the sender:
    400 unsigned or stale, 401 a signature that does not verify, 503 keys we could not
    fetch (the sender retries later). `code` says which, for logs and the answer."""

    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def unsigned(what: str) -> SignatureError:
    """A callback without the headers its sender always signs with."""
    return SignatureError(f"Unsigned callback: the {what} headers are required.",
                          code="unsigned", status=400)


def bad_signature() -> SignatureError:
    """No signature on the callback verifies."""
    return SignatureError("The callback's signature does not verify.", code="bad_signature",
                          status=401)


def keys_unavailable(detail: str) -> SignatureError:
    """The keys to check the signature with could not be had; the sender should retry."""
    return SignatureError(f"The signing keys could not be fetched: {detail}",
                          code="keys_unavailable", status=503)


def check_timestamp(value: str, *, now: float, tolerance: float = TOLERANCE_SECONDS) -> int:
    """The Unix timestamp (seconds) a callback was sent at, if within `tolerance` of `now`
    in either direction (a clock ahead of ours is as suspect as an old message)."""
    if not _TIMESTAMP.fullmatch(value or ""):
        raise SignatureError("The callback's timestamp is not a Unix time in seconds.",
                             code="unsigned", status=400)
    timestamp = int(value)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"The callback's timestamp is more than {int(tolerance)} s away "
                             "from this server's clock (stale or replayed).",
                             code="stale", status=400)
    return timestamp


# --- Standard Webhooks -----------------------------------------------------------------------


def standard_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for: the base64-decoded part after the prefix
    (the spec's rule, not the secret's text)."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("A webhook secret is whsec_ followed by base64.") from None
    if not key:
        raise ValueError("A webhook secret may not be empty.")
    return key


def verify_standard(secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                    tolerance: float = TOLERANCE_SECONDS) -> str:
    """Check a Standard Webhooks signature; returns the `webhook-id` (the message id, the
    same on every retry of one message). `headers` has lower-case names."""
    message_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (message_id and stamp and signatures):
        raise unsigned("webhook-id, webhook-timestamp and webhook-signature")
    check_timestamp(stamp, now=now, tolerance=tolerance)
    try:
        key = standard_key(secret)
    except ValueError as error:
        raise keys_unavailable(str(error)) from None
    signed = f"{message_id}.{stamp}.".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other schemes (e.g. asymmetric v1a) are not ours to check
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return message_id
    raise bad_signature()


# --- Ed25519 with a JSON Web Key Set ---------------------------------------------------------


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def ed25519_keys(jwks: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys of a JSON Web Key Set (others are skipped); none is an
    error, as nothing could ever verify."""
    found = []
    for jwk in (jwks.get("keys") if isinstance(jwks, dict) else None) or []:
        if not (isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
                and isinstance(jwk.get("x"), str)):
            continue
        try:
            found.append(Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"])))
        except (binascii.Error, ValueError):
            continue
    if not found:
        raise keys_unavailable("the key set holds no Ed25519 key")
    return found


def verify_ed25519(keys: Iterable[Ed25519PublicKey], signature_hex: str, message: bytes) -> None:
    """Pass if any of `keys` signed `message` (signature given as hex), else raise."""
    if not _HEX.fullmatch(signature_hex or ""):
        raise bad_signature()
    signature = bytes.fromhex(signature_hex)
    for key in keys:
        try:
            key.verify(signature, message)
            return
        except InvalidSignature:
            continue
    raise bad_signature()


# --- key cache -------------------------------------------------------------------------------


class KeyCache:
    """Keys (a secret, a key set) fetched from a provider, by cache key (e.g. the URL they
    came from), kept `max_age` seconds."""

    def __init__(self, max_age: float, *, refetch_after: float = REFETCH_SECONDS):
        self.max_age = max_age
        self.refetch_after = refetch_after
        self._entries: dict[Any, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def verified(self, cache_key: Any, fetch: Callable[[], K], check: Callable[[K], T]) -> T:
        """`check(keys)` with the cached keys (fetched first if missing or old). If the
        signature does not verify and the keys are older than `refetch_after`, they are
        fetched again and checked once more: the provider may have rotated them."""
        keys, fetched_at = self._get(cache_key, fetch)
        try:
            return check(keys)
        except SignatureError as error:
            if error.code != "bad_signature" or time.monotonic() - fetched_at < self.refetch_after:
                raise
        keys, _ = self._fetch(cache_key, fetch)
        return check(keys)

    def clear(self) -> None:
        """Forget every key (tests; an operator's secret change needs no restart otherwise)."""
        with self._lock:
            self._entries.clear()

    def _get(self, cache_key: Any, fetch: Callable[[], K]) -> tuple[K, float]:
        with self._lock:
            entry = self._entries.get(cache_key)
        if entry is not None and time.monotonic() - entry[1] < self.max_age:
            return entry
        return self._fetch(cache_key, fetch)

    def _fetch(self, cache_key: Any, fetch: Callable[[], K]) -> tuple[K, float]:
        # Fetched outside the lock: one slow provider must not hold up checks for the others.
        entry = (fetch(), time.monotonic())
        with self._lock:
            self._entries[cache_key] = entry
        return entry
