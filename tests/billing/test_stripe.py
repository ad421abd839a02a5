"""Stripe Checkout top-ups against a fake Stripe server, and signed webhook events:
credited exactly once per session, whatever is replayed, raced, tampered or stale, and
only for sessions this server created, to the account and for the amount it recorded."""
from __future__ import annotations

import json
import logging
import threading
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from runbase_web.extensions import db
from runbase_web.models import CheckoutSession, EntryKind, LedgerEntry
from runbase_web.services import billing, ledger, stripe_checkout
from tests.billing import entries_of
from tests.fakes import stripe as fake_stripe
from tests.fakes.server import FakeServer, FakeState
from tests.web import balance_of, field_error, sign_in


@pytest.fixture
def stripe(app_config):
    """The fake Stripe server, with the app's Stripe settings pointing at it."""
    state = FakeState()
    server = FakeServer(fake_stripe.make_app(state)).start()
    app_config.update(STRIPE_SECRET_KEY=fake_stripe.SECRET_KEY,
                      STRIPE_WEBHOOK_SECRET=fake_stripe.WEBHOOK_SECRET,
                      STRIPE_API_BASE=server.url)
    yield SimpleNamespace(state=state, url=server.url)
    server.stop()


@pytest.fixture
def signed_in(stripe, client, user):
    """The test client, signed in as `user` (alice, $1.00), with Stripe configured."""
    sign_in(client, user.email)
    return client


def start_topup(client, stripe, **form) -> dict:
    """Choose an amount on the credits page; returns the session the fake created."""
    response = client.post("/settings/credits/topup", data=form)
    assert response.status_code == 303, response.text
    [session] = stripe.state.data["sessions"].values()
    assert response.headers["Location"] == session["url"]
    return session


def deliver(client, event: dict, **sign_options):
    """POST a signed event to the webhook."""
    body, headers = fake_stripe.signed(event, **sign_options)
    return client.post("/stripe/webhook", data=body, headers=headers)


def topups(app, user_id: int) -> list[LedgerEntry]:
    """The user's topup ledger entries."""
    return [e for e in entries_of(app, user_id) if e.kind == "topup"]


def created_session(app, stripe, user_id: int, cents: int = 1000) -> dict:
    """A session created and recorded by the app's own code (what the top-up form does,
    without a browser): for webhook tests that need no signed-in client."""
    with app.app_context():
        created = stripe_checkout.create_checkout_session(
            requests.Session(), api_base=stripe.url, secret_key=fake_stripe.SECRET_KEY,
            form=stripe_checkout.checkout_form(user_id=user_id, cents=cents,
                                               success_url="https://example.com/ok",
                                               cancel_url="https://example.com/no"))
        stripe_checkout.record_session(db.session, created, user_id=user_id, cents=cents)
        db.session.commit()
    return created


def recorded(app) -> list[CheckoutSession]:
    """Every recorded Checkout Session, oldest first."""
    with app.app_context():
        return list(db.session.query(CheckoutSession).order_by(CheckoutSession.id))


def warnings_about(caplog, session_id: str) -> list[str]:
    """The warnings logged that name this session."""
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and session_id in r.getMessage()]


NOT_CREDITED = {"received": True, "credited": False}


# --- starting a payment ----------------------------------------------------------------


def test_a_preset_amount_creates_a_checkout_session_and_redirects(stripe, signed_in, user):
    session = start_topup(signed_in, stripe, amount="2500")
    assert session["id"].startswith("cs_test_") and session["url"].startswith("https://checkout.stripe.com/")
    [call] = stripe.state.calls_to("POST", "/v1/checkout/sessions")
    assert call.headers["Authorization"] == f"Bearer {fake_stripe.SECRET_KEY}"
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.headers["Idempotency-Key"]
    form = {key: values[0] for key, values in call.form.items()}
    assert form == {
        "mode": "payment",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "Runbase credit ($25.00)",
        "line_items[0][quantity]": "1",
        "success_url": "http://localhost/settings/credits?topup=success&session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://localhost/settings/credits?topup=canceled",
        "client_reference_id": str(user.id),
        "metadata[user_id]": str(user.id),
        "metadata[amount_micros]": "25000000",
    }
    assert balance_of(signed_in.application, user.id) == 1_000_000  # nothing until the webhook


def test_the_session_is_recorded_before_the_browser_goes_to_stripe(stripe, app, signed_in, user):
    session = start_topup(signed_in, stripe, amount="2500")
    [row] = recorded(app)
    assert (row.stripe_session_id, row.user_id, row.amount_cents, row.amount_micros,
            row.currency, row.mode, row.ledger_entry_id) == (
        session["id"], user.id, 2500, 25_000_000, "usd", "payment", None)
    assert row.created_at is not None


@pytest.mark.parametrize("body", [
    {"url": "https://checkout.stripe.com/c/pay/x"},
    {"id": "", "url": "https://checkout.stripe.com/c/pay/x"},
    {"id": 12, "url": "https://checkout.stripe.com/c/pay/x"},
    {"id": "cs_" + "x" * 300, "url": "https://checkout.stripe.com/c/pay/x"},
])
def test_a_session_without_a_usable_id_is_refused_and_not_recorded(stripe, app, signed_in, body):
    stripe.state.script["create"].append({"status": 200, "json": body})
    response = signed_in.post("/settings/credits/topup", data={"amount": "500"})
    assert response.status_code == 502 and "The payment provider refused the top-up." in response.text
    assert recorded(app) == []


def test_a_custom_amount_is_sent_in_cents(stripe, signed_in):
    start_topup(signed_in, stripe, custom_amount="$123.45")
    form = stripe.state.calls[0].form
    assert form["line_items[0][price_data][unit_amount]"] == ["12345"]
    assert form["metadata[amount_micros]"] == ["123450000"]


@pytest.mark.parametrize("custom, message", [
    ("4.99", "Top-ups are between $5 and $500."),
    ("500.01", "Top-ups are between $5 and $500."),
    ("10.001", "Use at most 2 decimals (cents)."),
    ("-10", "The amount can&#39;t be negative."),
    ("ten", "Enter an amount in dollars, like 25.50."),
    ("", "Enter an amount in dollars, like 25.50."),
])
def test_bad_custom_amounts_are_refused_next_to_the_field(stripe, signed_in, custom, message):
    response = signed_in.post("/settings/credits/topup", data={"custom_amount": custom})
    assert response.status_code == 422
    assert field_error(response.text, "custom_amount") == message
    assert f'value="{custom}"' in response.text
    assert stripe.state.calls == []


def test_only_offered_presets_are_accepted(stripe, signed_in):
    response = signed_in.post("/settings/credits/topup", data={"amount": "100000"})
    assert response.status_code == 422 and "Choose one of the amounts offered." in response.text
    assert stripe.state.calls == []


def test_a_stripe_refusal_is_shown_and_nothing_is_credited(stripe, app, signed_in, user):
    stripe.state.script["create"].append({"status": 400, "json": {"error": {
        "message": "Amount must convert to at least 50 cents.", "type": "invalid_request_error"}}})
    response = signed_in.post("/settings/credits/topup", data={"amount": "500"})
    assert response.status_code == 502
    assert "The payment provider refused the top-up: Amount must convert to at least 50 cents." in response.text
    assert balance_of(app, user.id) == 1_000_000


def test_an_unreachable_stripe_is_a_clear_error(stripe, app, signed_in):
    stripe.state.script["create"].append({"status": 200, "raw": "<html>oops</html>"})
    assert signed_in.post("/settings/credits/topup", data={"amount": "500"}).status_code == 502
    app.config["STRIPE_API_BASE"] = "http://127.0.0.1:9"  # nothing listens there
    response = signed_in.post("/settings/credits/topup", data={"amount": "500"})
    assert response.status_code == 502 and "Couldn&#39;t reach the payment provider" in response.text


def test_the_page_offers_top_ups_when_configured(signed_in):
    page = signed_in.get("/settings/credits").text
    assert "Pay with Stripe" in page and "not configured" not in page
    for dollars in (5, 10, 25, 50):
        assert f'name="amount" value="{dollars * 100}">${dollars}</button>' in page
    assert "Thanks!" in signed_in.get("/settings/credits?topup=success&session_id=cs_test_x").text
    assert "canceled" in signed_in.get("/settings/credits?topup=canceled").text


# --- the webhook -------------------------------------------------------------------------


def test_a_paid_session_is_credited_once_and_shows_in_history_and_csv(stripe, app, signed_in, user):
    session = start_topup(signed_in, stripe, amount="2500")
    event = fake_stripe.completed_event(session)
    response = deliver(signed_in, event)
    assert response.status_code == 200 and response.get_json() == {"received": True, "credited": True}
    assert balance_of(app, user.id) == 26_000_000
    [topup] = topups(app, user.id)
    assert (topup.amount_micros, topup.external_ref, topup.balance_after_micros) == (25_000_000, session["id"], 26_000_000)
    assert [row.ledger_entry_id for row in recorded(app)] == [topup.id]
    # The same event again (Stripe retries), and another event for the same session.
    assert deliver(signed_in, event).get_json() == {"received": True, "credited": False}
    later = fake_stripe.completed_event(session, event_type="checkout.session.async_payment_succeeded")
    assert deliver(signed_in, later).status_code == 200
    assert balance_of(app, user.id) == 26_000_000 and len(topups(app, user.id)) == 1
    assert [row.ledger_entry_id for row in recorded(app)] == [topup.id]

    page = signed_in.get("/settings/credits").text
    assert ">topup<" in page and "+$25.00" in page and "Stripe Checkout top-up" in page
    newest = signed_in.get("/settings/credits.csv").text.splitlines()[1].split(",")
    assert newest[1:7] == ["topup", "25.000000", "25000000", "26.000000", "26000000", ""]
    assert newest[7] == session["id"]


def test_the_amount_is_the_recorded_one_not_the_metadata(stripe, app, signed_in, user):
    session = start_topup(signed_in, stripe, amount="500")
    event = fake_stripe.completed_event(session, metadata={"user_id": str(user.id),
                                                           "amount_micros": "999000000"})
    deliver(signed_in, event)
    assert balance_of(app, user.id) == 6_000_000


def test_concurrent_duplicate_deliveries_credit_once(stripe, app, signed_in, user, http_server):
    session = start_topup(signed_in, stripe, amount="1000")
    body, headers = fake_stripe.signed(fake_stripe.completed_event(session))
    barrier, answers = threading.Barrier(8), []

    def post():
        barrier.wait()
        answers.append(requests.post(f"{http_server}/stripe/webhook", data=body, headers=headers, timeout=60))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 8
    assert sorted(a.json()["credited"] for a in answers) == [False] * 7 + [True]
    assert balance_of(app, user.id) == 11_000_000 and len(topups(app, user.id)) == 1
    assert [row.ledger_entry_id for row in recorded(app)] == [topups(app, user.id)[0].id]


def test_a_credit_racing_in_another_transaction_is_a_no_op(app, user):
    """The second transaction passes the "already recorded?" check before the first
    commits, then loses on the UNIQUE ref: it must change nothing and return None."""
    results = {}
    with app.app_context():
        first = billing.record_topup(db.session, user.id, 5_000_000, checkout_session_id="cs_test_race")
        assert first is not None

        def second():
            with app.app_context():
                results["second"] = billing.record_topup(db.session, user.id, 5_000_000,
                                                         checkout_session_id="cs_test_race")
                db.session.commit()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # let it reach the lock the first transaction holds
        db.session.commit()
        thread.join(timeout=60)
    assert results == {"second": None}
    assert balance_of(app, user.id) == 6_000_000 and len(topups(app, user.id)) == 1


def test_losing_the_unique_ref_rolls_back_only_the_credit(app, user, monkeypatch):
    """Force the race path: the pre-check misses, the INSERT hits the UNIQUE ref."""
    with app.app_context():
        billing.record_topup(db.session, user.id, 5_000_000, checkout_session_id="cs_test_dup")
        db.session.commit()
        answers = iter([False, True])
        monkeypatch.setattr(ledger, "_already_recorded", lambda _session, _ref: next(answers))
        assert billing.record_topup(db.session, user.id, 5_000_000, checkout_session_id="cs_test_dup") is None
        ledger.credit(db.session, user.id, 1, kind=EntryKind.GRANT, note="same transaction")
        db.session.commit()
    assert balance_of(app, user.id) == 6_000_001 and len(topups(app, user.id)) == 1


def test_bad_signatures_are_refused(stripe, app, client, user):
    session = created_session(app, stripe, user.id, cents=1000)
    event = fake_stripe.completed_event(session)
    body, headers = fake_stripe.signed(event)
    tampered = body.replace(b'"amount_total": 1000', b'"amount_total": 100000')
    assert tampered != body
    assert client.post("/stripe/webhook", data=tampered, headers=headers).status_code == 400
    stale = int(time.time()) - 301
    assert deliver(client, event, timestamp=stale).status_code == 400
    assert deliver(client, event, secret="whsec_wrong").status_code == 400
    for header in (None, "", "t=abc,v1=00", f"t={int(time.time())}", "v1=" + "0" * 64,
                   headers["Stripe-Signature"].replace("v1=", "v0=")):
        sent = {} if header is None else {"Stripe-Signature": header}
        assert client.post("/stripe/webhook", data=body, headers=sent).status_code == 400
    assert balance_of(app, user.id) == 1_000_000
    # Within the tolerance, and with several v1 signatures (secret rolling), it is accepted.
    timestamp = int(time.time()) - 250
    good = stripe_checkout.sign(body, fake_stripe.WEBHOOK_SECRET, timestamp).split(",")[1]
    rolled = f"t={timestamp},v1={'ab' * 32},{good}"
    assert client.post("/stripe/webhook", data=body, headers={"Stripe-Signature": rolled}).status_code == 200
    assert balance_of(app, user.id) == 11_000_000


def test_unpaid_and_other_events_are_acknowledged_without_credit(stripe, app, client, user):
    session = created_session(app, stripe, user.id, cents=1000)
    unpaid = deliver(client, fake_stripe.completed_event(session, paid=False))
    assert unpaid.status_code == 200 and unpaid.get_json()["credited"] is False
    other = {**fake_stripe.completed_event(session), "type": "payment_intent.succeeded"}
    assert deliver(client, other).status_code == 200
    euros = fake_stripe.completed_event(session, currency="eur")
    assert deliver(client, euros).get_json()["credited"] is False
    signed_junk = b"[1, 2]"
    header = stripe_checkout.sign(signed_junk, fake_stripe.WEBHOOK_SECRET)
    assert client.post("/stripe/webhook", data=signed_junk, headers={"Stripe-Signature": header}).status_code == 400
    # The session is still creditable once it is actually paid.
    assert deliver(client, fake_stripe.completed_event(session)).get_json()["credited"] is True
    assert balance_of(app, user.id) == 11_000_000


# --- only sessions this server created, as it created them ----------------------------------


@pytest.mark.parametrize("reference", ["client_reference_id", "metadata"])
def test_a_paid_session_this_server_never_created_credits_nobody(stripe, app, client, user,
                                                                 make_user, caplog, reference):
    """The attack: a Payment Link (or any other session on the same Stripe account) that
    names someone's account is paid; Stripe signs its event like any other."""
    attacker = make_user("mallory@example.com")
    names = ({"client_reference_id": str(user.id)} if reference == "client_reference_id"
             else {"metadata": {"user_id": str(user.id), "amount_micros": "50000000"}})
    session = fake_stripe.foreign_session(cents=5000, **names)
    caplog.set_level(logging.WARNING)
    for event_type in stripe_checkout.PAID_EVENT_TYPES:
        response = deliver(client, fake_stripe.completed_event(session, event_type=event_type))
        assert response.status_code == 200 and response.get_json() == NOT_CREDITED
    assert balance_of(app, user.id) == 1_000_000 and balance_of(app, attacker.id) == 1_000_000
    assert topups(app, user.id) == [] and recorded(app) == []
    assert len(warnings_about(caplog, session["id"])) == 2
    assert fake_stripe.WEBHOOK_SECRET not in caplog.text and fake_stripe.SECRET_KEY not in caplog.text


def test_an_unknown_id_with_a_recorded_sessions_details_credits_nobody(
        stripe, app, signed_in, user, caplog):
    """Only the id ties an event to a record; everything else about it may be copied."""
    session = start_topup(signed_in, stripe, amount="500")
    caplog.set_level(logging.WARNING)
    unknown = {**session, "id": session["id"] + "x"}
    assert deliver(signed_in, fake_stripe.completed_event(unknown)).get_json() == NOT_CREDITED
    assert balance_of(app, user.id) == 1_000_000 and warnings_about(caplog, unknown["id"])


def test_the_recorded_account_is_credited_whatever_the_event_names(stripe, app, signed_in, user,
                                                                   make_user, caplog):
    """The session was created, and paid, for `user`: the money is theirs, not the
    account the event's reference or metadata name."""
    other = make_user("bob@example.com")
    session = start_topup(signed_in, stripe, amount="2500")
    caplog.set_level(logging.WARNING)
    event = fake_stripe.completed_event(session, client_reference_id=str(other.id),
                                        metadata={"user_id": str(other.id)})
    assert deliver(signed_in, event).get_json() == {"received": True, "credited": True}
    assert balance_of(app, user.id) == 26_000_000 and balance_of(app, other.id) == 1_000_000
    assert topups(app, other.id) == [] and len(topups(app, user.id)) == 1
    [warning] = warnings_about(caplog, session["id"])
    assert f"crediting account {user.id}" in warning


@pytest.mark.parametrize("amount_total", [2499, 2501, 250_000, "2500", 2500.0, None, True])
def test_an_amount_other_than_the_recorded_one_is_not_credited(stripe, app, signed_in, user,
                                                               caplog, amount_total):
    session = start_topup(signed_in, stripe, amount="2500")
    caplog.set_level(logging.WARNING)
    event = fake_stripe.completed_event(session, amount_total=amount_total)
    assert deliver(signed_in, event).get_json() == NOT_CREDITED
    assert balance_of(app, user.id) == 1_000_000
    [warning] = warnings_about(caplog, session["id"])
    assert "amount_total" in warning and "2500 cents recorded" in warning
    # A refused event changes nothing: the right one for the session still credits it.
    assert deliver(signed_in, fake_stripe.completed_event(session)).get_json()["credited"] is True
    assert balance_of(app, user.id) == 26_000_000


@pytest.mark.parametrize("changes, problem", [
    ({"currency": "eur"}, "currency 'eur'"),
    ({"currency": None}, "currency None"),
    ({"mode": "subscription"}, "mode 'subscription'"),
    ({"mode": "setup"}, "mode 'setup'"),
    ({"mode": None}, "mode None"),
])
def test_another_currency_or_mode_is_not_credited(stripe, app, signed_in, user, caplog,
                                                  changes, problem):
    session = start_topup(signed_in, stripe, amount="1000")
    caplog.set_level(logging.WARNING)
    response = deliver(signed_in, fake_stripe.completed_event(session, **changes))
    assert response.status_code == 200 and response.get_json() == NOT_CREDITED
    assert balance_of(app, user.id) == 1_000_000 and topups(app, user.id) == []
    [warning] = warnings_about(caplog, session["id"])
    assert problem in warning
    assert [row.ledger_entry_id for row in recorded(app)] == [None]


def test_malformed_session_objects_are_acknowledged_without_credit(stripe, app, client, user):
    session = created_session(app, stripe, user.id)
    for data in ([1], {"object": [1]}, {"object": {**session, "object": "payment_intent"}},
                 {"object": {**session, "id": None}}, {"object": {**session, "id": ""}}):
        event = {**fake_stripe.completed_event(session), "data": data}
        response = deliver(client, event)
        assert response.status_code == 200 and response.get_json() == NOT_CREDITED
    assert balance_of(app, user.id) == 1_000_000


@pytest.mark.parametrize("app_config", [{"WTF_CSRF_ENABLED": True}])
def test_the_webhook_needs_no_csrf_token_but_the_top_up_form_does(stripe, app, client, user):
    session = created_session(app, stripe, user.id, cents=500)
    assert deliver(client, fake_stripe.completed_event(session)).status_code == 200
    assert balance_of(app, user.id) == 6_000_000
    page = client.get("/auth/login").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/auth/login", data={"email": user.email, "password": "password123", "csrf_token": token})
    assert client.post("/settings/credits/topup", data={"amount": "500"}).status_code == 400
    assert len(stripe.state.calls) == 1 and len(recorded(app)) == 1  # only created_session's


def test_without_a_webhook_secret_the_endpoint_is_off(client, user):
    body, headers = fake_stripe.signed({"type": "checkout.session.completed"})
    assert client.post("/stripe/webhook", data=body, headers=headers).status_code == 404


def test_signature_helpers_follow_stripes_scheme():
    """The documented example: v1 is HMAC-SHA256 of "<t>.<body>" keyed with the secret."""
    import hashlib
    import hmac
    body = json.dumps({"id": "evt_1"}).encode()
    expected = hmac.new(b"whsec_x", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert stripe_checkout.sign(body, "whsec_x", 1700000000) == f"t=1700000000,v1={expected}"
    stripe_checkout.verify_signature(body, f"t=1700000000,v1={expected}", "whsec_x", now=1700000300)
    with pytest.raises(stripe_checkout.SignatureError):
        stripe_checkout.verify_signature(body, f"t=1700000000,v1={expected}", "whsec_x", now=1700000301)
