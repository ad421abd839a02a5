"""Stripe Checkout for top-ups: amounts, creating a session over HTTP, and verifying and
reading the webhook events that say a session was paid.

Plain `requests` against STRIPE_API_BASE (no SDK), so tests can point it at a fake
server. Signatures follow Stripe's scheme: header `t=<unix time>,v1=<hex>[,v1=...]`,
v1 = HMAC-SHA256(webhook secret, "<t>.<raw body>").
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import requests

from ..errors import RunbaseError
from .billing import MICROS_PER_CENT, parse_dollars

#: The amounts offered as one-click buttons, in cents.
PRESET_CENTS = (500, 1000, 2500, 5000)
MIN_TOPUP_CENTS = 500
MAX_TOPUP_CENTS = 50_000
#: How old a signed event may be (Stripe's libraries default to 300 s): limits replays.
SIGNATURE_TOLERANCE_SECONDS = 300
#: Events that may carry a paid session; "async_payment_succeeded" ends delayed methods.
PAID_EVENT_TYPES = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
TIMEOUT = (5, 30)


class StripeUnavailable(RunbaseError):
    """Stripe refused or could not be reached while creating a Checkout Session."""

    status = 502
    code = "payment_provider_error"


class SignatureError(ValueError):
    """A webhook whose Stripe-Signature is missing, malformed, wrong or too old."""


def is_configured(config: Mapping[str, Any]) -> bool:
    """Whether top-ups are on: both the secret key and the webhook secret are set."""
    return bool(config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_WEBHOOK_SECRET"))


def topup_cents(preset: str | None, custom: str | None) -> int:
    """The amount chosen on the credits page, in cents: a preset button's cents, or a
    custom dollar amount between the minimum and maximum (error on field "custom_amount")."""
    if preset:
        if not preset.isdigit() or int(preset) not in PRESET_CENTS:
            raise RunbaseError("Choose one of the amounts offered.", field="amount")
        return int(preset)
    micros = parse_dollars(custom or "", field="custom_amount", decimals=2,
                           maximum_micros=10 ** 12)
    cents = micros // MICROS_PER_CENT
    if not MIN_TOPUP_CENTS <= cents <= MAX_TOPUP_CENTS:
        raise RunbaseError(f"Top-ups are between ${MIN_TOPUP_CENTS // 100} and "
                           f"${MAX_TOPUP_CENTS // 100}.", field="custom_amount")
    return cents


def checkout_form(*, user_id: int, cents: int, success_url: str, cancel_url: str) -> dict[str, str]:
    """The form fields of POST /v1/checkout/sessions for one top-up."""
    return {
        "mode": "payment",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": str(cents),
        "line_items[0][price_data][product_data][name]":
            f"Runbase credit (${cents // 100}.{cents % 100:02d})",
        "line_items[0][quantity]": "1",
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(user_id),
        "metadata[user_id]": str(user_id),
        "metadata[amount_micros]": str(cents * MICROS_PER_CENT),
    }


def create_checkout_session(http: requests.Session, *, api_base: str, secret_key: str,
                            form: Mapping[str, str]) -> dict:
    """Create a Checkout Session; returns Stripe's session object (with `id` and `url`)."""
    try:
        response = http.post(f"{api_base}/v1/checkout/sessions", data=dict(form),
                             headers={"Authorization": f"Bearer {secret_key}",
                                      "Idempotency-Key": str(uuid.uuid4())},
                             timeout=TIMEOUT)
    except requests.RequestException:
        raise StripeUnavailable("Couldn't reach the payment provider. Try again in a minute.") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) \
            or not str(body.get("url", "")).startswith("https://"):
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise StripeUnavailable("The payment provider refused the top-up"
                                + (f": {message}" if message else "."))
    return body


# --- webhooks ----------------------------------------------------------------------------


def verify_signature(payload: bytes, header: str | None, secret: str, *,
                     tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
                     now: float | None = None) -> None:
    """Check a Stripe-Signature header against the raw body, as Stripe's libraries do:
    any v1 signature may match (several during secret rolling); the timestamp must be
    at most `tolerance` seconds old."""
    timestamp, signatures = _parse_header(header)
    signed = f"{timestamp}.".encode() + payload
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("no v1 signature matches the payload")
    if timestamp < (time.time() if now is None else now) - tolerance:
        raise SignatureError("timestamp outside the tolerance")


def _parse_header(header: str | None) -> tuple[int, list[str]]:
    timestamp, signatures = None, []
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise SignatureError("missing timestamp or v1 signature")
    return int(timestamp), signatures


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload` (for tests and local tooling)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload,
                      hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class PaidTopup:
    """A paid Checkout Session to credit: who, how much, and the session id as the ref."""

    session_id: str
    user_id: int
    amount_micros: int


def parse_event(payload: bytes) -> dict:
    """The event object of a verified body (ValueError if it isn't a JSON object)."""
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError("event is not an object")
    return event


def paid_topup(event: Mapping[str, Any]) -> PaidTopup | None:
    """The top-up a verified event pays for, or None (other types, unpaid, not USD, ours not).

    The amount is the session's `amount_total` as Stripe charged it, never our metadata;
    the user is the `client_reference_id` we set server-side when creating the session.
    """
    if event.get("type") not in PAID_EVENT_TYPES:
        return None
    session = (event.get("data") or {}).get("object") or {}
    if session.get("object", "checkout.session") != "checkout.session" \
            or session.get("payment_status") != "paid" \
            or str(session.get("currency", "")).lower() != "usd":
        return None
    session_id, amount = session.get("id"), session.get("amount_total")
    user = session.get("client_reference_id") or (session.get("metadata") or {}).get("user_id")
    if not isinstance(session_id, str) or not session_id or not str(user or "").isdigit() \
            or not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return None
    return PaidTopup(session_id, int(user), amount * MICROS_PER_CENT)
