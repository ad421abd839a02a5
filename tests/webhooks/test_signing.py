"""Signing: the secret format and key decoding, and the signing rules against three
verifiers: the snippet the settings page shows, this suite's independent one, and the
`standardwebhooks` package (when installed)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import threading
import time

import pytest

from runbase_web.extensions import db
from runbase_web.services import webhooks
from tests.webhooks import deliver_due
from tests.web import sign_in
from tests.webhooks import Receiver, Rejected, verify


def test_known_answer_from_the_standard():
    # The Standard Webhooks reference vector: the key is the base64-decoded secret.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert webhooks.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                              b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secret_is_whsec_and_base64_of_32_random_bytes():
    first, second = webhooks.new_secret(), webhooks.new_secret()
    assert first != second and first.startswith("whsec_")
    assert len(base64.b64decode(first[len("whsec_"):], validate=True)) == 32
    with pytest.raises(ValueError):
        webhooks.secret_key("whsec_not base64!")


def test_the_key_is_the_decoded_bytes_not_the_text():
    secret = webhooks.new_secret()
    headers = webhooks.signed_headers(secret, "msg_x", 1700000000, b"{}")
    keyed_with_text = base64.b64encode(hmac.new(secret.encode(), b"msg_x.1700000000.{}",
                                                hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] != "v1," + keyed_with_text
    verify(secret, headers, b"{}", now=1700000000)


def test_first_uses_at_once_agree_on_one_secret(app, user):
    barrier = threading.Barrier(4)
    seen = []

    def first_use():
        with app.app_context():
            barrier.wait()
            seen.append(webhooks.ensure_secret(db.session, user.id))
            db.session.commit()
    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 4 and len(set(seen)) == 1


# --- S11 ------------------------------------------------------------------------------

def page_verifier(client, user):
    """The `verify` function exactly as the settings page prints it."""
    sign_in(client, user.email)
    page = client.get("/settings/webhooks").get_data(as_text=True)
    code = re.search(r"<code data-verify-snippet>(.*?)</code>", page, re.S).group(1)
    namespace: dict = {}
    exec(html.unescape(code), namespace)  # noqa: S102 (our own page's snippet, under test)
    return namespace["verify"]


@pytest.fixture
def verifiers(client, user):
    """name -> function(secret, headers, body) giving the receiver's HTTP status."""
    from_page = page_verifier(client, user)

    def page(secret, headers, body):
        return 200 if from_page(secret, headers, body) else 401

    def independent(secret, headers, body):
        try:
            verify(secret, headers, body)
        except Rejected as error:
            return error.status
        return 200

    found = {"page snippet": page, "independent": independent}
    try:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    except ImportError:
        return found

    def package(secret, headers, body):
        try:
            Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            return 401
        return 200
    found["standardwebhooks"] = package
    return found


@pytest.fixture
def delivered(app, client, auth, user, receiver, create_run):
    """A real delivery: (secret, headers, raw body) as the receiver got them."""
    run = create_run(receiver.url, delay_ms=60_000)
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200
    deliver_due(app)
    [got] = receiver.received
    return receiver.secret, got.headers, got.body


def resigned(secret, headers, body, timestamp):
    """The same message, correctly signed for another timestamp."""
    return webhooks.signed_headers(secret, headers["webhook-id"], timestamp, body)


def without(headers, name):
    return {key: value for key, value in headers.items() if key != name}


def s11_cases(secret, headers, body):
    """(case, headers, body, statuses a correct receiver may answer)."""
    now = int(time.time())
    bogus = "v1," + base64.b64encode(b"\0" * 32).decode()
    valid = headers["webhook-signature"]
    reserialised = json.dumps(json.loads(body)).encode()
    assert reserialised != body  # compact and sorted, so any re-serialisation differs
    return [
        ("valid", headers, body, {200}),
        ("tampered body", headers, body.replace(b'"canceled"', b'"cancelled"'), {401}),
        ("timestamp -6 min", resigned(secret, headers, body, now - 360), body, {401}),
        ("timestamp +6 min", resigned(secret, headers, body, now + 360), body, {401}),
        ("timestamp -4 min", resigned(secret, headers, body, now - 240), body, {200}),
        ("wrong secret", resigned(webhooks.new_secret(), headers, body, now), body, {401}),
        ("missing webhook-id", without(headers, "webhook-id"), body, {400, 401}),
        ("missing webhook-timestamp", without(headers, "webhook-timestamp"), body, {400, 401}),
        ("missing webhook-signature", without(headers, "webhook-signature"), body, {400, 401}),
        ("two signatures, valid second", {**headers, "webhook-signature": f"{bogus} {valid}"}, body, {200}),
        ("two signatures, valid first", {**headers, "webhook-signature": f"{valid} {bogus}"}, body, {200}),
        ("body parsed and re-serialised", headers, reserialised, {401}),
    ]


def test_s11_verification_corpus(delivered, verifiers):
    secret, headers, body = delivered
    assert b'"canceled"' in body
    failures = []
    for case, case_headers, case_body, allowed in s11_cases(secret, headers, body):
        for name, check in verifiers.items():
            status = check(secret, case_headers, case_body)
            if status not in allowed:
                failures.append(f"{case} / {name}: {status}, expected {sorted(allowed)}")
    assert failures == []


def test_s11_same_webhook_id_twice_is_acknowledged_without_effect(delivered):
    secret, headers, body = delivered
    receiver = Receiver(secret=secret)
    assert receiver.handle(headers, body) == 200
    state = json.dumps(receiver.handled, sort_keys=True)
    replay = resigned(secret, headers, body, int(time.time()))  # a retry: new timestamp, same id
    assert receiver.handle(replay, body) == 200
    assert json.dumps(receiver.handled, sort_keys=True) == state
    assert [r.status for r in receiver.received] == [200, 200]
