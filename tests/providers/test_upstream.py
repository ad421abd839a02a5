"""Public models routed to an upstream hosted Runbase (a fake speaking its API)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.providers import upstream
from runbase_web.worker import execute
from tests.conftest import wait_for_run
from tests.fakes import replicate as fake_replicate
from tests.fakes import runbase as fake_runbase
from tests.providers.support import (
    PNG, assert_stored, balance, create, ledger, restart_worker, start_fake, upload,
    wait_for_upstream_cancel, wait_for_upstream_id, write_catalog)

KEY = "sk-upstream-test"
MODEL = "openai/gpt-image-2"
PRICE = 50_000  # our price for gpt-image-2 at the default 1K resolution


@pytest.fixture
def fake(app_config):
    """The fake upstream Runbase; no OpenAI key here, so gpt-image-2 is routed to it."""
    state, server = start_fake(fake_runbase.make_app)
    app_config.update(PROVIDER_ENV={"RUNBASE_UPSTREAM_URL": server.url, "RUNBASE_UPSTREAM_KEY": KEY},
                      FETCH_ALLOW_LOOPBACK=True)
    yield SimpleNamespace(state=state, url=server.url)
    server.stop()


@pytest.fixture
def short_deadline(fake, app_config, tmp_path):
    """gpt-image-2 with a 3 s deadline."""
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [{"id": MODEL, "deadline_seconds": 3}])


def test_routed_run_succeeds_with_a_stored_file_and_the_exact_request(fake, app, client, auth, user, worker):
    run = create(client, auth, MODEL, aspect_ratio="16:9", resolution="2K")
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, PNG)
    [create_call] = fake.state.calls_to("POST", "/api/v1/runs")
    assert create_call.headers["Authorization"] == f"Bearer {KEY}"
    assert create_call.headers["Idempotency-Key"] == run["id"]
    # Our input with our defaults applied, so both servers run the same thing.
    assert create_call.json == {"model": MODEL, "input": {
        "prompt": "a red fox in the snow", "aspect_ratio": "16:9", "resolution": "2K",
        "image_urls": []}}
    assert all(c.path == f"/api/v1/runs/{done.upstream_id}"
               for c in fake.state.calls_to("GET", "/api/v1/runs/"))
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_an_upload_is_uploaded_to_the_upstream_account_first(fake, app, client, auth, worker):
    """The upstream cannot read our owner-only upload: it is uploaded to the upstream
    account (its POST /api/v1/files), and the run there uses that file's URL."""
    url = upload(client, auth, fake_replicate.tiny_png(), "ref.png")
    run = create(client, auth, MODEL, image_urls=[url])
    assert wait_for_run(app, run["id"]).status == "succeeded"
    [sent] = fake.state.calls_to("POST", "/api/v1/files")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    [create_call] = fake.state.calls_to("POST", "/api/v1/runs")
    assert create_call.json["input"]["image_urls"] == [f"{fake.url}/api/v1/files/upload-1"]
    (data, media_type), = fake.state.data["uploads"].values()
    with app.app_context():
        assert data == state.storage(app).read(url.rsplit("/", 1)[1])
    assert media_type == "image/png"


def test_outputs_on_the_upstream_origin_arrive_although_loopback_is_refused(
        fake, app_config, app, client, auth, worker):
    # As in production: the guard refuses loopback, but the upstream the operator configured
    # is trusted for its own files like for its API calls (fetched with our upstream key).
    app.config["FETCH_ALLOW_LOOPBACK"] = False
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert_stored(client, done, PNG)
    assert fake.state.data["downloaded"]


def test_upstream_url_with_the_api_prefix_works(fake, app_config, app, client, auth, worker):
    app.config["PROVIDER_ENV"] = {**app.config["PROVIDER_ENV"],
                                  "RUNBASE_UPSTREAM_URL": fake.url + "/api/v1/"}
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert done.status == "succeeded", done.error


def test_failed_upstream_run_fails_ours_with_its_code_and_refunds(fake, app, client, auth, user, worker):
    fake.state.data["outcome"] = "fail"
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and done.error_code == "content_rejected"
    assert "blocked by the provider's safety system" in done.error
    assert ledger(app, run["id"]) == [("charge", -PRICE), ("refund", PRICE)]
    assert balance(app, user) == 1_000_000


def test_upstream_out_of_balance_is_a_clear_final_error(fake, app, client, auth, user, worker):
    fake.state.data["balance"] = 0
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and done.error_code == "provider_error"
    assert "upstream Runbase account has too little balance" in done.error
    assert "operator" in done.error and "insufficient_balance" in done.error
    assert len(fake.state.calls_to("POST", "/api/v1/runs")) == 1
    assert ledger(app, run["id"]) == [("charge", -PRICE), ("refund", PRICE)]


RATE_LIMITED = {"status": 429, "headers": {"Retry-After": "0"}, "json": {
    "error": {"message": "Rate limit exceeded", "code": "RATE_LIMITED"}}}
UNAVAILABLE = {"status": 503, "json": {"error": {"message": "Upstream is restarting",
                                                 "code": "unavailable"}}}


def test_rate_limited_create_is_retried_with_one_charge(fake, app, client, auth, user, worker):
    fake.state.script["create"].append(RATE_LIMITED)
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert len(fake.state.calls_to("POST", "/api/v1/runs")) == 2 and fake.state.data["creates"] == 1
    (_, first), (_, second) = [t for t in fake.state.data["times"] if t[0] == "create"]
    assert second - first >= 1.0  # "Retry-After: 0" is no immediate retry
    assert ledger(app, run["id"]) == [("charge", -PRICE)]


@pytest.fixture
def quick_throttle_waits(monkeypatch):
    """The floor under a provider's wait hint is 1 s; 0.1 s keeps these tests quick."""
    monkeypatch.setattr(execute, "MIN_HINTED_WAIT_SECONDS", 0.1)


def test_throttles_do_not_use_up_the_attempts(quick_throttle_waits, fake, app, client, auth, user,
                                              worker):
    fake.state.script["create"].extend([RATE_LIMITED] * 5)  # more than max_attempts (3)
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert len(fake.state.calls_to("POST", "/api/v1/runs")) == 6 and fake.state.data["creates"] == 1
    assert done.attempts == 1  # only the call that created something counts
    assert ledger(app, run["id"]) == [("charge", -PRICE)]


def test_throttled_until_the_deadline_times_out_and_refunds(quick_throttle_waits, short_deadline,
                                                            fake, app, client, auth, user, worker):
    fake.state.script["create"].extend([RATE_LIMITED] * 500)
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "timeout", done.error
    assert len(fake.state.calls_to("POST", "/api/v1/runs")) > 3
    assert fake.state.data.get("creates", 0) == 0
    assert ledger(app, run["id"]) == [("charge", -PRICE), ("refund", PRICE)]


def test_polls_back_off_while_the_upstream_is_unreachable(fake, app, client, auth, user, worker,
                                                          monkeypatch):
    # Pinned jitter and a 0.1 s first step: failed polls wait 0.1, 0.2, 0.4, 0.8 s.
    monkeypatch.setattr(execute, "BASE_BACKOFF_SECONDS", 0.1)
    monkeypatch.setattr(execute, "jitter", lambda low, high: (low + high) / 2)
    fake.state.script["get"].extend([UNAVAILABLE] * 4)
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    gets = [at for route, at in fake.state.data["times"] if route == "get"]
    assert len(gets) == 5 and fake.state.data["creates"] == 1
    gaps = [later - earlier for earlier, later in zip(gets, gets[1:])]
    # A poll never comes before its wait is over; how late it comes depends on the worker's tick
    # and on the machine's load, so only the lower bounds are asserted. Without backoff every gap
    # would be about one tick (0.2 s) and the last one would fail.
    for gap, wait in zip(gaps, [0.1, 0.2, 0.4, 0.8]):
        assert gap >= wait - 0.01, gaps
    assert ledger(app, run["id"]) == [("charge", -PRICE)]


def test_create_that_times_out_after_the_upstream_accepted_it_is_not_repeated(
        fake, app, client, auth, worker, monkeypatch):
    monkeypatch.setattr(upstream, "CREATE_TIMEOUT", 1.0)
    fake.state.script["create"].append({"sleep_after": 1.3})
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    calls = fake.state.calls_to("POST", "/api/v1/runs")
    assert len(calls) >= 2 and {c.headers["Idempotency-Key"] for c in calls} == {run["id"]}
    assert fake.state.data["creates"] == 1  # one upstream run, one upstream charge
    assert done.upstream_id == next(iter(fake.state.data["runs"]))


def test_never_finishing_upstream_run_times_out_is_canceled_and_refunded(short_deadline, fake, app,
                                                                         client, auth, user, worker):
    fake.state.data["outcome"] = "never"
    run = create(client, auth, MODEL)
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "timeout"
    wait_for_upstream_cancel(app, run["id"])
    [cancel] = fake.state.calls_to("POST", f"/api/v1/runs/{done.upstream_id}/cancel")
    assert cancel.headers["Authorization"] == f"Bearer {KEY}"
    assert fake.state.data["runs"][done.upstream_id]["errorCode"] == "canceled"
    assert ledger(app, run["id"]) == [("charge", -PRICE), ("refund", PRICE)]
    assert balance(app, user) == 1_000_000


def test_worker_stopped_while_polling_resumes_the_same_upstream_run(fake, app, client, auth, worker):
    fake.state.data["polls_needed"] = 2
    run = create(client, auth, MODEL)
    upstream_id = wait_for_upstream_id(app, run["id"])
    restart_worker(app)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert done.upstream_id == upstream_id and fake.state.data["creates"] == 1


def set_openai_key(app) -> None:
    """The operator configures OpenAI while a run is upstream: new runs would go to OpenAI."""
    app.config["PROVIDER_ENV"] = {**app.config["PROVIDER_ENV"], "OPENAI_API_KEY": "sk-openai"}


def test_a_run_keeps_polling_the_upstream_after_the_provider_key_is_set(fake, app, client, auth,
                                                                        worker):
    fake.state.data["polls_needed"] = 4
    run = create(client, auth, MODEL)
    upstream_id = wait_for_upstream_id(app, run["id"])
    gets_before = len(fake.state.calls_to("GET", f"/api/v1/runs/{upstream_id}"))
    set_openai_key(app)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert done.adapter == "runbase" and done.upstream_id == upstream_id
    assert len(fake.state.calls_to("GET", f"/api/v1/runs/{upstream_id}")) > gets_before
    assert fake.state.data["creates"] == 1
    assert ledger(app, run["id"]) == [("charge", -PRICE)]


def test_the_upstream_cancel_goes_where_the_run_started_after_the_key_is_set(fake, app, client,
                                                                            auth, worker):
    fake.state.data["outcome"] = "never"
    run = create(client, auth, MODEL)
    upstream_id = wait_for_upstream_id(app, run["id"])
    set_openai_key(app)
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200
    wait_for_upstream_cancel(app, run["id"])
    assert len(fake.state.calls_to("POST", f"/api/v1/runs/{upstream_id}/cancel")) == 1
    assert fake.state.data["runs"][upstream_id]["errorCode"] == "canceled"


def test_a_run_from_before_the_adapter_column_is_routed_by_the_variables(fake, app, client, auth,
                                                                         worker):
    fake.state.data["polls_needed"] = 4
    run = create(client, auth, MODEL)
    upstream_id = wait_for_upstream_id(app, run["id"])
    with app.app_context():  # as a row written before migration 0006 would be
        db.session.get(Run, run["id"]).adapter = None
        db.session.commit()
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert done.adapter is None and done.upstream_id == upstream_id


@pytest.fixture
def forced(fake, app_config, tmp_path):
    """gpt-image-2 forced upstream although this server has an OpenAI key."""
    app_config["PROVIDER_ENV"] = {**app_config["PROVIDER_ENV"], "OPENAI_API_KEY": "sk-openai"}
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [{"id": MODEL, "adapter": "runbase"}])


def test_operator_can_force_a_model_upstream(forced, fake, app, client, auth, worker):
    done = wait_for_run(app, create(client, auth, MODEL)["id"])
    assert done.status == "succeeded", done.error
    assert fake.state.data["creates"] == 1


def test_forced_model_may_name_another_upstream_id(tmp_path):
    spec = SimpleNamespace(id="mine/banana", adapter="runbase", upstream="google/nano-banana-2")
    assert upstream.upstream_model(spec) == "google/nano-banana-2"
    assert upstream.upstream_model(SimpleNamespace(id=MODEL, adapter="openai",
                                                   upstream="gpt-image-2")) == MODEL
