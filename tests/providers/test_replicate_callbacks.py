"""Replicate calls back instead of being polled: the fake sends real, signed webhooks over
HTTP to our /callbacks endpoint (README, "Provider callbacks")."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from runbase_web.extensions import db
from runbase_web.models import ProviderCallback, Run, StoredFile
from tests.conftest import wait_for_run
from tests.fakes import replicate as fake_replicate
from tests.providers.support import (
    PAINTER, PNG, assert_stored, balance, callbacks_sent, create, ledger, start_fake, stop_soon,
    wait_for_callbacks, wait_for_upstream_cancel, wait_for_upstream_id, write_catalog)

TOKEN = "r8-test"
MODEL = PAINTER["id"]


@pytest.fixture
def fake(app_config, tmp_path):
    """The fake Replicate, whose predictions end by themselves 0.3 s after their create;
    the fallback poll is far off, so a run that ends soon ended from its callback."""
    state, server = start_fake(fake_replicate.make_app)
    state.data["finish_after"] = 0.3
    app_config.update(
        PROVIDER_ENV={"REPLICATE_API_TOKEN": TOKEN, "REPLICATE_BASE_URL": server.url},
        FETCH_ALLOW_LOOPBACK=True, CATALOG_PATH=write_catalog(tmp_path, [PAINTER]),
        CALLBACK_POLL_SECONDS=60)
    yield SimpleNamespace(state=state, url=server.url)
    stop_soon(server)


def polls(fake) -> int:
    """GETs of predictions (the secret and files are other GETs)."""
    return len(fake.state.calls_to("GET", "/v1/predictions/"))


def stored_files(app, run_id: str) -> int:
    """How many files we stored for the run."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(StoredFile)
                                 .where(StoredFile.run_id == run_id))


def test_run_finishes_from_the_callback_without_a_single_poll(fake, app, public_url, client,
                                                              auth, worker):
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert_stored(client, done, PNG)
    assert polls(fake) == 0
    [submit] = fake.state.calls_to("POST", "/v1/models/")
    assert submit.json["webhook"].startswith(f"{public_url}/callbacks/replicate/{run['id']}/")
    assert submit.json["webhook_events_filter"] == ["completed"]
    [callback] = wait_for_callbacks(fake, 1)
    assert callback["status"] == 200 and callback["answer"]["outcome"] == "accepted"
    # The signing secret is fetched with the API token, once, and cached.
    [secret_get] = fake.state.calls_to("GET", "/v1/webhooks/default/secret")
    assert secret_get.headers["Authorization"] == f"Bearer {TOKEN}"
    assert ledger(app, run["id"]) == [("charge", -3000)]
    with app.app_context():
        assert db.session.get(Run, run["id"]).callback_body is None  # read once, cleared


def test_a_callback_that_overtakes_the_create_answer_still_ends_the_run(fake, app, public_url,
                                                                       client, auth, worker):
    # The prediction ends and calls back before the worker has even stored its id: the
    # callback waits on the run, and the worker looks as soon as it has written the id.
    fake.state.data.update(call_back_first=True)
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "succeeded", done.error
    assert polls(fake) == 0
    assert [c["answer"]["outcome"] for c in wait_for_callbacks(fake, 1)] == ["accepted"]


def test_a_forged_callback_is_refused_and_the_fallback_poll_ends_the_run(fake, app, public_url,
                                                                        client, auth, worker):
    app.config["CALLBACK_POLL_SECONDS"] = 1.0
    fake.state.data["sign_with"] = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    run = create(client, auth, MODEL)
    [forged] = wait_for_callbacks(fake, 1)
    assert forged["status"] == 401 and forged["answer"]["error"]["code"] == "bad_signature"
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "succeeded", done.error
    assert polls(fake) >= 1  # ended by the poll, not by the forgery
    assert ledger(app, run["id"]) == [("charge", -3000)]


def test_unsigned_and_stale_callbacks_are_refused_and_change_nothing(fake, app, public_url,
                                                                     client, auth, worker):
    del fake.state.data["finish_after"]  # the prediction ends when the test says so
    fake.state.data["outcome"] = "never"
    run = create(client, auth, MODEL)
    prediction_id = wait_for_upstream_id(app, run["id"])
    prediction = fake.state.data["predictions"][prediction_id]
    body = '{"id": "%s", "status": "succeeded", "output": ["https://example.com/x.png"]}' % prediction_id
    unsigned = fake_replicate.post_callback(fake.state, prediction["_webhook"],
                                            {"Content-Type": "application/json"}, body)
    assert unsigned["status"] == 400 and unsigned["answer"]["error"]["code"] == "unsigned"
    for skew in (-600, 600):  # too old, or from a clock far ahead
        stale = fake_replicate.call_back(fake.state, prediction_id,
                                         timestamp=int(time.time()) + skew)
        assert stale["status"] == 400 and stale["answer"]["error"]["code"] == "stale"
    with app.app_context():
        kept = db.session.get(Run, run["id"])
        assert kept.status == "processing" and kept.callback_body is None
        assert db.session.scalar(select(func.count()).select_from(ProviderCallback)) == 0
    assert polls(fake) == 0


def test_a_replayed_callback_is_acted_on_once(fake, app, public_url, client, auth, worker):
    del fake.state.data["finish_after"]
    fake.state.data["outcome"] = "never"
    run = create(client, auth, MODEL)
    prediction_id = wait_for_upstream_id(app, run["id"])
    # A (signed) callback while the prediction still runs: the worker takes it, sees the
    # prediction running, and looks for itself.
    first = fake_replicate.call_back(fake.state, prediction_id)
    assert first["answer"]["outcome"] == "accepted"
    deadline = time.monotonic() + 10
    while polls(fake) < 1:
        assert time.monotonic() < deadline, "the worker never looked after the callback"
        time.sleep(0.02)
    replay = fake_replicate.resend(fake.state, first)
    assert replay["status"] == 200 and replay["answer"]["outcome"] == "duplicate"
    time.sleep(0.5)
    assert polls(fake) == 1  # the replay woke nobody
    with app.app_context():
        assert db.session.get(Run, run["id"]).status == "processing"


def test_callbacks_after_the_run_ended_change_nothing(fake, app, public_url, client, auth, user,
                                                      worker):
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "succeeded", done.error
    [first] = wait_for_callbacks(fake, 1)
    # The same message again (Replicate retrying a delivery it thinks failed), and a new
    # message about the same prediction: both are answered 200 and ignored.
    again = fake_replicate.resend(fake.state, first)
    fresh = fake_replicate.call_back(fake.state, done.upstream_id)
    assert [again["status"], fresh["status"]] == [200, 200]
    assert again["answer"]["outcome"] == fresh["answer"]["outcome"] == "ignored"
    time.sleep(0.5)
    with app.app_context():
        after = db.session.get(Run, run["id"])
        assert after.status == "succeeded" and after.output_urls == done.output_urls
        assert after.callback_body is None
    assert ledger(app, run["id"]) == [("charge", -3000)]
    assert stored_files(app, run["id"]) == 1
    assert balance(app, user) == 1_000_000 - 3000


def test_a_late_success_for_a_canceled_run_changes_nothing(fake, app, public_url, client, auth,
                                                           user, worker):
    del fake.state.data["finish_after"]
    fake.state.data["outcome"] = "never"
    run = create(client, auth, MODEL)
    prediction_id = wait_for_upstream_id(app, run["id"])
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200
    wait_for_upstream_cancel(app, run["id"])
    # The prediction had in fact finished as we canceled; its callback comes late.
    late = fake_replicate.finish(fake.state, prediction_id, status="succeeded")
    assert late["status"] == 200 and late["answer"]["outcome"] == "ignored"
    time.sleep(0.5)
    with app.app_context():
        after = db.session.get(Run, run["id"])
        assert after.status == "failed" and after.error_code == "canceled"
        assert after.callback_body is None and after.output_urls is None
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]
    assert balance(app, user) == 1_000_000
    assert stored_files(app, run["id"]) == 0


def test_a_failure_callback_refunds_once_and_a_later_success_is_ignored(fake, app, public_url,
                                                                        client, auth, user, worker):
    fake.state.data.update(outcome="fail", error="NSFW content detected")
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "content_rejected", done.error
    assert polls(fake) == 0
    late = fake_replicate.finish(fake.state, done.upstream_id, status="succeeded")
    assert late["answer"]["outcome"] == "ignored"
    time.sleep(0.5)
    with app.app_context():
        assert db.session.get(Run, run["id"]).status == "failed"
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]
    assert balance(app, user) == 1_000_000


def test_without_a_public_url_no_webhook_is_asked_for(fake, app, client, auth, worker):
    del fake.state.data["finish_after"]  # predictions move on as they are polled
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    [submit] = fake.state.calls_to("POST", "/v1/models/")
    assert "webhook" not in submit.json and "webhook_events_filter" not in submit.json
    assert polls(fake) >= 1 and not callbacks_sent(fake)
    assert not fake.state.calls_to("GET", "/v1/webhooks/")


def test_callbacks_switched_off_by_the_operator_are_not_asked_for(fake, app, public_url, client,
                                                                 auth, worker):
    app.config["PROVIDER_CALLBACKS"] = False  # RUNBASE_PROVIDER_CALLBACKS=0
    del fake.state.data["finish_after"]
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert done.status == "succeeded", done.error
    [submit] = fake.state.calls_to("POST", "/v1/models/")
    assert "webhook" not in submit.json and polls(fake) >= 1
