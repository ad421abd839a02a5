"""Outgoing webhooks: queue one signed message when a run with a `webhook` URL ends.

Signing follows Standard Webhooks (v1, HMAC-SHA256): the account secret is
`whsec_` + base64 of random bytes, and the HMAC key is those decoded bytes, not
the text. The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`.
Delivery itself (claim, POST, retries) is the worker's: worker/webhook_delivery.py.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import string
from datetime import datetime

from sqlalchemy import desc, select, update
from sqlalchemy.orm import Session

from ..errors import RunNotFound
from ..ids import random_text
from ..models import Run, User, WebhookAttempt, WebhookDelivery, utcnow
from .run_object import run_object

SECRET_PREFIX = "whsec_"
#: The spec asks for 24 to 64 random bytes.
SECRET_BYTES = 32
USER_AGENT = "Runbase-Webhooks/1"
_ID_ALPHABET = string.ascii_letters + string.digits


class DeliveryStatus:
    """The three states of a delivery row."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# --- the account secret --------------------------------------------------------------

def new_secret() -> str:
    """A fresh `whsec_...` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def ensure_secret(session: Session, user_id: int) -> str:
    """The account's signing secret, created on first use.

    The conditional UPDATE makes two first uses at once (the settings page and a
    delivery) agree on one secret instead of each keeping its own.
    """
    session.execute(update(User).where(User.id == user_id, User.webhook_secret.is_(None))
                    .values(webhook_secret=new_secret()))
    return session.scalars(select(User.webhook_secret).where(User.id == user_id)).one()


def rotate_secret(session: Session, user_id: int) -> str:
    """Replace the account's secret; attempts from now on are signed with the new one."""
    secret = new_secret()
    session.execute(update(User).where(User.id == user_id).values(webhook_secret=secret))
    return secret


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for: the base64-decoded part after the prefix."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("A webhook secret is whsec_ followed by base64.") from None


# --- signing ---------------------------------------------------------------------------

def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `id.timestamp.body` (body as the exact bytes sent)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header a delivery attempt carries."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body),
            "Content-Type": "application/json", "User-Agent": USER_AGENT}


# --- queueing ----------------------------------------------------------------------------

def new_message_id() -> str:
    """`msg_` and 24 random letters and digits (the `webhook-id`, same on every retry)."""
    return "msg_" + random_text(_ID_ALPHABET, 24)


def payload_for(run: Run, public_url: str) -> str:
    """The run object exactly as the API serialises it (Flask's compact, sorted JSON)."""
    return json.dumps(run_object(run, public_url), sort_keys=True, separators=(",", ":"))


def enqueue_for_run(session: Session, run_id: str, *,
                    public_url: str) -> WebhookDelivery | None:
    """Queue the run's webhook delivery, in the transaction that ended the run.

    Called once per run (only by the call that actually ended it), so a run gets at
    most one message. `public_url` is RUNBASE_PUBLIC_URL, the base of the output URLs:
    never a request's host, since runs end in the worker, which has no request, and a
    payload must not depend on which request happened to end the run (empty: the URLs
    stay site paths). Returns the delivery, or None when the run has no webhook.
    """
    # populate_existing: the run was just ended by a bulk UPDATE the session may not have seen.
    run = session.get(Run, run_id, populate_existing=True)
    if run is None or not run.webhook_url:
        return None
    at = run.completed_at or utcnow()
    delivery = WebhookDelivery(id=new_message_id(), run_id=run.id, user_id=run.user_id,
                               url=run.webhook_url, payload=payload_for(run, public_url),
                               status=DeliveryStatus.PENDING, attempts=0,
                               next_attempt_at=at, created_at=at)
    session.add(delivery)
    session.flush()
    return delivery


# --- reading and resending -----------------------------------------------------------------

def deliveries_for_run(session: Session, user_id: int, run_id: str) -> list[WebhookDelivery]:
    """The deliveries of the user's run, oldest first; RunNotFound for another account's."""
    run = session.get(Run, run_id) if isinstance(run_id, str) and len(run_id) <= 40 else None
    if run is None or run.user_id != user_id:
        raise RunNotFound(f"No run with id '{run_id}' for this account.")
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.run_id == run.id)
                                .order_by(WebhookDelivery.created_at, WebhookDelivery.id)))


def attempts_of(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    """Attempts per delivery id, newest first."""
    found: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        rows = session.scalars(select(WebhookAttempt)
                               .where(WebhookAttempt.delivery_id.in_(delivery_ids))
                               .order_by(desc(WebhookAttempt.attempted_at), desc(WebhookAttempt.id)))
        for attempt in rows:
            found[attempt.delivery_id].append(attempt)
    return found


def recent_deliveries(session: Session, user_id: int, limit: int = 20) -> list[WebhookDelivery]:
    """The account's newest deliveries."""
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.user_id == user_id)
                                .order_by(desc(WebhookDelivery.created_at), desc(WebhookDelivery.id))
                                .limit(limit)))


def resend(session: Session, user_id: int, run_id: str, delivery_id: str, *,
           at: datetime | None = None) -> bool:
    """Queue one more attempt of the user's delivery at `at` (default: now); False if it
    is not theirs.

    The message keeps its `webhook-id`, so a receiver that already handled it can
    acknowledge the copy without acting twice. Automatic retries after this attempt
    still end 24 h after the first attempt: a resend outside that window is one try.
    """
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.run_id == run_id,
               WebhookDelivery.user_id == user_id)
        .values(status=DeliveryStatus.PENDING, next_attempt_at=at or utcnow()))
    return result.rowcount == 1
