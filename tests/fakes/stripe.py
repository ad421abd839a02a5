"""A fake Stripe API: POST /v1/checkout/sessions answers like Stripe's Checkout Session
object (reference: https://docs.stripe.com/api/checkout/sessions/create), and test
helpers that build and sign webhook events the way Stripe does.

`foreign_session` builds a session the app never created (a Payment Link, another
integration on the same Stripe account), for the webhook's "not ours" cases.

State knobs (`state.data`):
  secret_key   the accepted Bearer key (default "sk_test_fake")
  sessions     created sessions by id (filled in by the fake)
Routes for `state.script`: "create" (see tests.fakes.replicate.answer for the format).
"""
from __future__ import annotations

import json
import secrets
import time

from flask import Flask, jsonify, request

from runbase_web.services.stripe_checkout import sign
from tests.fakes.replicate import scripted
from tests.fakes.server import FakeState

SECRET_KEY = "sk_test_fake"
WEBHOOK_SECRET = "whsec_test_secret"


def _error(status: int, message: str, kind: str = "invalid_request_error"):
    response = jsonify({"error": {"message": message, "type": kind}})
    response.status_code = status
    return response


def _session_object(form: dict[str, str]) -> dict:
    """Stripe's checkout.session object for a just-created, unpaid session."""
    session_id = "cs_test_" + secrets.token_hex(24)
    amount = int(form["line_items[0][price_data][unit_amount]"]) * int(form["line_items[0][quantity]"])
    return {
        "id": session_id, "object": "checkout.session", "mode": form.get("mode"),
        "amount_subtotal": amount, "amount_total": amount,
        "currency": form["line_items[0][price_data][currency]"],
        "client_reference_id": form.get("client_reference_id"),
        "metadata": {key[len("metadata["):-1]: value for key, value in form.items()
                     if key.startswith("metadata[")},
        "payment_status": "unpaid", "status": "open",
        "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
        "created": int(time.time()), "expires_at": int(time.time()) + 86400,
        "livemode": False, "customer": None, "payment_intent": None,
        "url": f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
    }


def make_app(state: FakeState) -> Flask:
    """The fake Stripe server."""
    app = Flask("fake_stripe")

    @app.post("/v1/checkout/sessions")
    def create_session():
        state.record()
        if (answer := scripted(state, "create")) is not None:
            return answer
        if request.headers.get("Authorization") != f"Bearer {state.data.get('secret_key', SECRET_KEY)}":
            return _error(401, "Invalid API Key provided: sk_test_***", "invalid_request_error")
        form = request.form.to_dict()
        for required in ("mode", "success_url", "line_items[0][price_data][unit_amount]",
                         "line_items[0][price_data][currency]", "line_items[0][quantity]"):
            if not form.get(required):
                return _error(400, f"Missing required param: {required}.")
        session = _session_object(form)
        with state.lock:
            state.data.setdefault("sessions", {})[session["id"]] = session
        return jsonify(session)

    return app


def foreign_session(*, cents: int, client_reference_id: str | None = None,
                    metadata: dict | None = None) -> dict:
    """A real, payable Checkout Session on the same Stripe account that the app did not
    create: a Payment Link opened with `?client_reference_id=`, or another integration.
    Its events are signed with the same webhook secret as the app's own."""
    form = {"mode": "payment", "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": str(cents), "line_items[0][quantity]": "1"}
    if client_reference_id is not None:
        form["client_reference_id"] = client_reference_id
    session = _session_object(form)
    session.update(metadata=dict(metadata or {}), payment_link="plink_" + secrets.token_hex(12))
    return session


def completed_event(session: dict, *, paid: bool = True, event_type: str = "checkout.session.completed",
                    **changes) -> dict:
    """The event Stripe sends when the session's checkout completes."""
    obj = {**session, "status": "complete", "payment_status": "paid" if paid else "unpaid",
           "payment_intent": "pi_" + secrets.token_hex(12) if paid else None, **changes}
    return {"id": "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2024-06-20",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
            "type": event_type, "data": {"object": obj}}


def signed(event: dict, secret: str = WEBHOOK_SECRET, *, timestamp: int | None = None) -> tuple[bytes, dict]:
    """The raw body and headers of a webhook delivery, signed like Stripe signs it."""
    body = json.dumps(event).encode()
    return body, {"Stripe-Signature": sign(body, secret, timestamp),
                  "Content-Type": "application/json; charset=utf-8"}
