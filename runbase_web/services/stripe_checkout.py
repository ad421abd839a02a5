"""Stripe Checkout for top-ups: amounts, creating a session over HTTP and recording it,
and verifying and reading the webhook events that say a session was paid.

Only sessions recorded here when this server created them are ever credited, for the
recorded account and amount: any other session on the same Stripe account (another
integration, a Payment Link with `?client_reference_id=`) is signed and paid just the
same, and its client_reference_id or metadata say whatever its creator chose.

Plain `requests` against STRIPE_API_BASE (no SDK), so tests can point it at a fake
server. Signatures follow Stripe's scheme: header `t=<unix time>,v1=<hex>[,v1=...]`,
v1 = HMAC-SHA256(webhook secret, "<t>.<raw body>").
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import RunbaseError
from ..models import CheckoutSession
from ..money import MICROS_PER_CENT, parse_dollars
from .billing import record_topup

log = logging.getLogger(__name__)

#: The amounts offered as one-click buttons, in cents.
PRESET_CENTS = (500, 1000, 2500, 5000)
MIN_TOPUP_CENTS = 500
MAX_TOPUP_CENTS = 50_000
#: How old a signed event may be (Stripe's libraries default to 300 s): limits replays.
SIGNATURE_TOLERANCE_SECONDS = 300
#: Events that may carry a paid session; "async_payment_succeeded" ends delayed methods.
PAID_EVENT_TYPES = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
TIMEOUT = (5, 30)
#: The only kind of session created, and the only one credited: a one-off USD payment.
MODE = "payment"
CURRENCY = "usd"


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
        "mode": MODE,
        "line_items[0][price_data][currency]": CURRENCY,
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
            or not str(body.get("url", "")).startswith("https://") or not _valid_id(body.get("id")):
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise StripeUnavailable("The payment provider refused the top-up"
                                + (f": {message}" if message else "."))
    return body


def _valid_id(session_id: Any) -> bool:
    # It becomes the UNIQUE key of the session's record and of its ledger entry.
    return isinstance(session_id, str) and 0 < len(session_id) <= 255


def record_session(session: Session, created: Mapping[str, Any], *, user_id: int,
                   cents: int) -> CheckoutSession:
    """Remember a Checkout Session Stripe just created for `user_id`, so its webhook can
    be credited. The caller commits before sending the browser to Stripe: a session the
    user can pay must already be on record when its payment arrives."""
    row = CheckoutSession(stripe_session_id=created["id"], user_id=user_id, amount_cents=cents,
                          currency=CURRENCY, mode=MODE)
    session.add(row)
    return row


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
    """A paid Checkout Session to credit: who, how much (both as recorded when this server
    created it), and the session id as the ledger ref."""

    session_id: str
    user_id: int
    amount_micros: int


def parse_event(payload: bytes) -> dict:
    """The event object of a verified body (ValueError if it isn't a JSON object)."""
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError("event is not an object")
    return event


def paid_topup(session: Session, event: Mapping[str, Any]) -> PaidTopup | None:
    """The top-up a verified event pays for, or None: other event types, sessions not paid
    yet, and (logged as warnings) sessions this server did not create or that differ
    from what it created in mode, currency or amount.

    The account and amount are the recorded ones, never the event's client_reference_id
    or metadata: those are only compared, and a mismatch is logged.
    """
    checkout = _checkout_object(event)
    if checkout is None:
        return None
    recorded = session.scalar(select(CheckoutSession).where(
        CheckoutSession.stripe_session_id == checkout["id"]))
    if recorded is None:
        log.warning("Stripe session %r was not created by this server: not credited",
                    checkout["id"])
        return None
    if checkout.get("payment_status") != "paid":
        return None  # e.g. a bank debit still pending: async_payment_succeeded follows
    problem = _mismatch(checkout, recorded)
    if problem:
        log.warning("Stripe session %r not credited: %s", checkout["id"], problem)
        return None
    _check_reference(checkout, recorded)
    return PaidTopup(recorded.stripe_session_id, recorded.user_id, recorded.amount_micros)


def _checkout_object(event: Mapping[str, Any]) -> dict | None:
    """The checkout.session of an event that may say it was paid, if it has an id."""
    if event.get("type") not in PAID_EVENT_TYPES:
        return None
    data = event.get("data")
    checkout = data.get("object") if isinstance(data, dict) else None
    if not isinstance(checkout, dict) \
            or checkout.get("object", "checkout.session") != "checkout.session" \
            or not _valid_id(checkout.get("id")):
        return None
    return checkout


def _mismatch(checkout: Mapping[str, Any], recorded: CheckoutSession) -> str | None:
    """Why Stripe's session is not the one recorded, or None. The sessions created here
    let the payer change nothing (no promotion codes, tax or adjustable quantity), so
    any difference means the record and the payment are not the same thing."""
    mode, currency, amount = (checkout.get("mode"), checkout.get("currency"),
                              checkout.get("amount_total"))
    if mode != MODE:
        return f"mode {mode!r} is not {MODE!r}"
    if not isinstance(currency, str) or currency.lower() != CURRENCY:
        return f"currency {currency!r} is not {CURRENCY!r}"
    if type(amount) is not int or amount != recorded.amount_cents:
        return f"amount_total {amount!r} is not the {recorded.amount_cents} cents recorded"
    return None


def _check_reference(checkout: Mapping[str, Any], recorded: CheckoutSession) -> None:
    """Log when the event names another account than the one recorded. The recorded
    account is still credited: the session was created, and paid, for that account."""
    metadata = checkout.get("metadata")
    named = [checkout.get("client_reference_id"),
             metadata.get("user_id") if isinstance(metadata, dict) else None]
    if any(value is not None and str(value) != str(recorded.user_id) for value in named):
        log.warning("Stripe session %r names another account than the one it was created "
                    "for: crediting account %s", checkout["id"], recorded.user_id)


def credit_topup(session: Session, topup: PaidTopup) -> bool:
    """Credit a paid top-up once and link its record to the ledger entry. False when an
    earlier or concurrent delivery of the same session already credited it (the UNIQUE
    ledger ref decides, whatever the timing)."""
    entry = record_topup(session, topup.user_id, topup.amount_micros,
                         checkout_session_id=topup.session_id)
    if entry is None:
        return False
    session.execute(update(CheckoutSession)
                    .where(CheckoutSession.stripe_session_id == topup.session_id)
                    .values(ledger_entry_id=entry.id))
    return True
