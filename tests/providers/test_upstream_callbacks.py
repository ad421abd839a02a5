"""An upstream Runbase calls back with its own webhooks (Standard Webhooks, the upstream
account's secret) when RUNBASE_UPSTREAM_WEBHOOK_SECRET is set (README, "Provider callbacks")."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import wait_for_run
from tests.fakes import runbase as fake_runbase
from tests.fakes.replicate import WEBHOOK_SECRET
from tests.providers.support import (
    PNG, assert_stored, callbacks_sent, create, ledger, start_fake, stop_soon, wait_for_callbacks)
from tests.providers.test_upstream import KEY, MODEL

OTHER_SECRET = "whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="


@pytest.fixture
def fake(app_config):
    """The fake upstream, whose runs end by themselves 0.3 s after their create; its
    account's webhook secret is configured here, and the fallback poll is far off."""
    state, server = start_fake(fake_runbase.make_app)
    state.data["finish_after"] = 0.3
    app_config.update(PROVIDER_ENV={"RUNBASE_UPSTREAM_URL": server.url,
                                    "RUNBASE_UPSTREAM_KEY": KEY,
                                    "RUNBASE_UPSTREAM_WEBHOOK_SECRET": WEBHOOK_SECRET},
                      FETCH_ALLOW_LOOPBACK=True, CALLBACK_POLL_SECONDS=60)
    yield SimpleNamespace(state=state, url=server.url)
    stop_soon(server)


def polls(fake) -> int:
    """GETs of upstream runs."""
    return len(fake.state.calls_to("GET", "/api/v1/runs/"))


def test_run_finishes_from_the_upstream_webhook_without_a_single_poll(fake, app, public_url,
                                                                     client, auth, worker):
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert_stored(client, done, PNG)
    assert polls(fake) == 0
    [create_call] = fake.state.calls_to("POST", "/api/v1/runs")
    assert create_call.json["webhook"].startswith(f"{public_url}/callbacks/runbase/{run['id']}/")
    [callback] = wait_for_callbacks(fake, 1)
    assert callback["status"] == 200 and callback["answer"]["outcome"] == "accepted"
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_a_failed_upstream_run_fails_ours_with_its_code_and_one_refund(fake, app, public_url,
                                                                      client, auth, worker):
    fake.state.data["outcome"] = "fail"
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "content_rejected", done.error
    assert polls(fake) == 0
    replay = fake_runbase.resend(fake.state, wait_for_callbacks(fake, 1)[0])
    assert replay["status"] == 200 and replay["answer"]["outcome"] == "ignored"
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"]), ("refund", run["costUsd"])]


def test_a_webhook_signed_with_another_secret_is_refused_and_polling_ends_the_run(
        fake, app, public_url, client, auth, worker):
    app.config["CALLBACK_POLL_SECONDS"] = 1.0
    fake.state.data["webhook_secret"] = OTHER_SECRET  # another account's secret
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "succeeded", done.error
    [forged] = wait_for_callbacks(fake, 1)
    assert forged["status"] == 401
    assert polls(fake) >= 1


def test_without_the_upstream_webhook_secret_no_webhook_is_asked_for(fake, app, public_url,
                                                                    client, auth, worker):
    env = dict(app.config["PROVIDER_ENV"])
    del env["RUNBASE_UPSTREAM_WEBHOOK_SECRET"]
    app.config["PROVIDER_ENV"] = env
    del fake.state.data["finish_after"]
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert done.status == "succeeded", done.error
    [create_call] = fake.state.calls_to("POST", "/api/v1/runs")
    assert "webhook" not in create_call.json
    assert polls(fake) >= 1 and not callbacks_sent(fake)


def test_without_a_public_url_no_webhook_is_asked_for(fake, app, client, auth, worker):
    del fake.state.data["finish_after"]
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert done.status == "succeeded", done.error
    [create_call] = fake.state.calls_to("POST", "/api/v1/runs")
    assert "webhook" not in create_call.json
