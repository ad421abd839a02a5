"""fal calls back instead of being polled: the fake sends Ed25519-signed webhooks over HTTP
to our /callbacks endpoint and publishes its key set (README, "Provider callbacks")."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runbase_web.extensions import db
from runbase_web.models import Run
from tests.conftest import wait_for_run
from tests.fakes import fal as fake_fal
from tests.providers.support import (
    PNG, assert_stored, balance, callbacks_sent, create, ledger, start_fake, stop_soon,
    wait_for_callbacks, wait_for_upstream_id, write_catalog)
from tests.providers.test_fal import FLUX, KEY

MODEL = FLUX["id"]


@pytest.fixture
def fake(app_config, tmp_path):
    """The fake fal queue, whose requests complete by themselves 0.3 s after their submit,
    and its key set; the fallback poll is far off."""
    state, server = start_fake(fake_fal.make_app)
    state.data["finish_after"] = 0.3
    app_config.update(
        PROVIDER_ENV={"FAL_KEY": KEY, "FAL_QUEUE_URL": server.url,
                      "FAL_WEBHOOK_JWKS_URL": f"{server.url}/.well-known/jwks.json"},
        FETCH_ALLOW_LOOPBACK=True, CATALOG_PATH=write_catalog(tmp_path, [FLUX]),
        CALLBACK_POLL_SECONDS=60)
    yield SimpleNamespace(state=state, url=server.url)
    stop_soon(server)


def polls(fake) -> int:
    """Status and result GETs (the key set and files are other GETs)."""
    return len([c for c in fake.state.calls_to("GET", "/fal-ai/") if "/requests/" in c.path])


def test_run_finishes_from_the_callback_without_a_single_poll(fake, app, public_url, client,
                                                              auth, worker):
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert_stored(client, done, PNG)
    assert polls(fake) == 0
    [submit] = fake.state.calls_to("POST", "/fal-ai/flux/dev")
    assert submit.args["fal_webhook"].startswith(f"{public_url}/callbacks/fal/{run['id']}/")
    [callback] = wait_for_callbacks(fake, 1)
    assert callback["status"] == 200 and callback["answer"]["outcome"] == "accepted"
    assert ledger(app, run["id"]) == [("charge", -25000)]


def test_an_error_callback_fails_the_run_with_one_refund(fake, app, public_url, client, auth,
                                                         user, worker):
    fake.state.data["outcome"] = "fail"
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "content_rejected", done.error
    assert "flagged" in done.error
    assert polls(fake) == 0
    # fal retries a delivery it thinks failed: signed anew, for a run that has ended.
    again = fake_fal.call_back(fake.state, done.upstream_id)
    assert again["status"] == 200 and again["answer"]["outcome"] == "ignored"
    assert ledger(app, run["id"]) == [("charge", -25000), ("refund", 25000)]
    assert balance(app, user) == 1_000_000


def test_a_callback_signed_with_another_key_is_refused_and_polling_ends_the_run(
        fake, app, public_url, client, auth, worker):
    app.config["CALLBACK_POLL_SECONDS"] = 1.0
    fake.state.data["sign_with"] = Ed25519PrivateKey.generate()
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "succeeded", done.error
    [forged] = wait_for_callbacks(fake, 1)
    assert forged["status"] == 401 and forged["answer"]["error"]["code"] == "bad_signature"
    assert polls(fake) >= 2  # status, then the result


def test_stale_tampered_and_replayed_callbacks_are_refused(fake, app, public_url, client, auth,
                                                          worker):
    del fake.state.data["finish_after"]
    fake.state.data["outcome"] = "never"
    run = create(client, auth, MODEL)
    request_id = wait_for_upstream_id(app, run["id"])
    stale = fake_fal.call_back(fake.state, request_id, timestamp=int(time.time()) - 301)
    assert stale["status"] == 400 and stale["answer"]["error"]["code"] == "stale"
    # A genuine callback whose result fal could not include (payload_error): the worker
    # takes it and asks the queue itself, which says the request still runs.
    body = json.dumps({"request_id": request_id, "gateway_request_id": request_id,
                       "status": "OK", "payload": None, "payload_error": "not valid JSON"})
    headers = fake_fal.fal_headers(fake_fal.signing_key(fake.state), request_id, body.encode())
    [stale_sent] = wait_for_callbacks(fake, 1)
    signed = fake_fal.post_callback(fake.state, stale_sent["url"], headers, body)
    assert signed["answer"]["outcome"] == "accepted"
    deadline = time.monotonic() + 10
    while polls(fake) < 1:
        assert time.monotonic() < deadline, "the worker never looked after the callback"
        time.sleep(0.02)
    tampered = fake_fal.post_callback(fake.state, signed["url"], signed["headers"],
                                      signed["body"].replace('"OK"', '"ERROR"'))
    assert tampered["status"] == 401
    other_request = fake_fal.resend(fake.state, signed,
                                    **{"X-Fal-Webhook-Request-Id": "0123456789abcdef"})
    assert other_request["status"] == 401  # the request id is signed too
    replay = fake_fal.resend(fake.state, signed)
    assert replay["status"] == 200 and replay["answer"]["outcome"] == "duplicate"
    time.sleep(0.3)
    assert polls(fake) == 1  # the replay woke nobody
    # The request completes; its callback (with the result) ends the run.
    assert fake_fal.finish(fake.state, request_id)["answer"]["outcome"] == "accepted"
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "succeeded", done.error
    with app.app_context():
        assert db.session.get(Run, run["id"]).callback_body is None


def test_without_a_public_url_no_webhook_is_asked_for(fake, app, client, auth, worker):
    del fake.state.data["finish_after"]
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert done.status == "succeeded", done.error
    [submit] = fake.state.calls_to("POST", "/fal-ai/flux/dev")
    assert "fal_webhook" not in submit.args
    assert polls(fake) >= 2 and not callbacks_sent(fake)
