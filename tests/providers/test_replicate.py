"""Replicate predictions through POST /api/v1/runs, against the fake Replicate server."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.providers.base import ProviderError
from runbase_web.providers.common import find_urls
from runbase_web.providers.media import data_uri
from runbase_web.providers.replicate import ReplicateClient
from tests.conftest import wait_for_run
from tests.fakes import replicate as fake_replicate
from tests.web import sign_in
from tests.providers.support import (
    PAINTER, PAINTER_PINNED, PNG, FakeResponse, assert_stored, balance, create, ledger,
    restart_worker, start_fake, upload, wait_for_upstream_cancel, wait_for_upstream_id,
    write_catalog)

TOKEN = "r8-test"


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def fake(app_config, tmp_path):
    """The fake Replicate server, with the app pointed at it and the painter models added."""
    state, server = start_fake(fake_replicate.make_app)
    app_config.update(
        PROVIDER_ENV={"REPLICATE_API_TOKEN": TOKEN, "REPLICATE_BASE_URL": server.url + "/v1"},
        FETCH_ALLOW_LOOPBACK=True,
        CATALOG_PATH=write_catalog(tmp_path, [PAINTER, PAINTER_PINNED]))
    yield SimpleNamespace(state=state, url=server.url)
    server.stop()


@pytest.fixture
def short_deadline(fake, app_config, tmp_path):
    """The painter with a 3 s deadline."""
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [{**PAINTER, "deadline_seconds": 3}])


# --- runs ------------------------------------------------------------------------------------


def test_prediction_succeeds_with_a_stored_file_and_the_exact_input(fake, app, client, auth, user, worker):
    run = create(client, auth, "replicate/acme/painter", aspect_ratio="16:9", num_outputs=2,
                 image_urls=["https://example.com/ref.png"])
    assert run["costUsd"] == 6000
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, PNG)
    [submit] = fake.state.calls_to("POST", "/v1/models/")
    assert submit.path == "/v1/models/acme/painter/predictions"
    assert submit.headers["Authorization"] == f"Bearer {TOKEN}"
    assert submit.json == {"input": {"prompt": "a red fox in the snow", "aspect_ratio": "16:9",
                                     "num_outputs": 2, "image": "https://example.com/ref.png"}}
    assert submit.headers["Cancel-After"].endswith("s")
    assert all(c.path == f"/v1/predictions/{done.upstream_id}" for c in fake.state.calls_to("GET", "/v1/"))
    assert fake.state.data["downloaded"]  # fetched from the provider's URL, once
    assert ledger(app, run["id"]) == [("charge", -6000)]


def test_an_upload_reaches_replicate_inline(fake, app, client, auth, worker):
    """Replicate fetches file URLs itself, and an upload is served only to its owner: our
    own files go as data URIs instead (an external URL, above, goes as it is)."""
    url = upload(client, auth, fake_replicate.tiny_png(), "ref.png")
    run = create(client, auth, "replicate/acme/painter", image_urls=[url])
    assert wait_for_run(app, run["id"]).status == "succeeded"
    [submit] = fake.state.calls_to("POST", "/v1/models/")
    with app.app_context():
        stored = state.storage(app).read(url.rsplit("/", 1)[1])
    assert submit.json["input"]["image"] == data_uri(stored, "image/png")


@pytest.mark.parametrize("shape", ["string", "nested"])
def test_pinned_version_and_other_output_shapes(fake, app, client, auth, worker, shape):
    fake.state.data.update(output_shape=shape, kind="video")
    run = create(client, auth, "replicate/acme/painter-pinned")
    assert_stored(client, wait_for_run(app, run["id"]), b"ftyp", offset=4)
    [submit] = fake.state.calls_to("POST", "/v1/predictions")
    assert submit.json["version"] == PAINTER_PINNED["upstream"].split(":")[1]
    assert submit.json["input"] == {"prompt": "a red fox in the snow", "aspect_ratio": "1:1",
                                    "num_outputs": 1}


def test_failed_prediction_fails_the_run_and_refunds(fake, app, client, auth, user, worker):
    fake.state.data.update(outcome="fail", error="CUDA out of memory")
    run = create(client, auth, "replicate/acme/painter")
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and done.error_code == "provider_error"
    assert "CUDA out of memory" in done.error
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]
    assert balance(app, user) == 1_000_000


def test_nsfw_failure_is_content_rejected(fake, app, client, auth, worker):
    fake.state.data.update(outcome="fail", error="NSFW content detected. Try a different prompt.")
    done = wait_for_run(app, create(client, auth, "replicate/acme/painter")["id"])
    assert done.status == "failed" and done.error_code == "content_rejected"


def test_invalid_input_at_create_is_final(fake, app, client, auth, worker):
    fake.state.script["create"].append({"status": 422, "json": {
        "title": "Input validation failed", "detail": "- input.num_outputs: Must be <= 1",
        "status": 422}})
    done = wait_for_run(app, create(client, auth, "replicate/acme/painter")["id"])
    assert done.status == "failed" and done.error_code == "invalid_input"
    assert "num_outputs" in done.error and len(fake.state.calls_to("POST", "/v1/")) == 1


def test_throttled_create_is_retried_with_one_charge(fake, app, client, auth, user, worker):
    fake.state.script["create"].append({"status": 429, "json": {
        "detail": "Request was throttled. Your rate limit resets in ~1s.", "retry_after": 0.3}})
    run = create(client, auth, "replicate/acme/painter")
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert len(fake.state.calls_to("POST", "/v1/models/")) == 2 and fake.state.data["submits"] == 1
    assert ledger(app, run["id"]) == [("charge", -3000)]


def test_server_errors_and_broken_json_while_polling_are_retried(fake, app, client, auth, worker):
    fake.state.script["get"].extend([
        {"status": 503, "json": {"title": "Service Unavailable", "detail": "try again", "status": 503}},
        {"status": 200, "raw": "{not json"}])
    done = wait_for_run(app, create(client, auth, "replicate/acme/painter")["id"])
    assert done.status == "succeeded", done.error
    assert fake.state.data["submits"] == 1


@pytest.mark.parametrize("where", ["api", "run page"])
def test_user_cancel_of_a_processing_run_cancels_the_prediction(fake, app, client, auth, user, worker,
                                                              where):
    fake.state.data["outcome"] = "never"
    run = create(client, auth, "replicate/acme/painter")
    upstream_id = wait_for_upstream_id(app, run["id"])
    if where == "api":
        assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200
    else:
        sign_in(client, user.email, "password123")
        assert client.post(f"/runs/{run['id']}/cancel").status_code == 303
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and done.error_code == "canceled"
    wait_for_upstream_cancel(app, run["id"], "sent")  # the worker asks the provider
    assert len(fake.state.calls_to("POST", f"/v1/predictions/{upstream_id}/cancel")) == 1
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]


def test_never_finishing_prediction_times_out_is_canceled_and_refunded(short_deadline, fake, app, client,
                                                                      auth, user, worker):
    fake.state.data["outcome"] = "never"
    run = create(client, auth, "replicate/acme/painter")
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "timeout"
    wait_for_upstream_cancel(app, run["id"])
    cancels = fake.state.calls_to("POST", f"/v1/predictions/{done.upstream_id}/cancel")
    assert len(cancels) == 1
    assert fake.state.data["predictions"][done.upstream_id]["status"] == "canceled"
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]
    assert balance(app, user) == 1_000_000


def test_worker_stopped_while_polling_resumes_the_same_prediction(fake, app, client, auth, worker):
    fake.state.data["polls_needed"] = 2
    run = create(client, auth, "replicate/acme/painter")
    upstream_id = wait_for_upstream_id(app, run["id"])
    restart_worker(app)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert done.upstream_id == upstream_id and fake.state.data["submits"] == 1
    assert len(done.output_urls) == 1


def test_expired_output_url_fails_the_run_and_refunds(fake, app, client, auth, worker):
    fake.state.script["file"].append({"status": 404, "raw": "expired"})
    run = create(client, auth, "replicate/acme/painter")
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and done.error_code == "output_unavailable"
    assert done.output_urls is None
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]


# --- the client alone ---------------------------------------------------------------------


@pytest.mark.parametrize("body, headers, expected", [
    ({"detail": "Request was throttled. Your rate limit resets in ~30s."}, {}, 30.0),
    ({"detail": "throttled", "retry_after": 4}, {}, 4.0),
    ({"detail": "throttled"}, {"Retry-After": "7"}, 7.0),
    ({"detail": "throttled"}, {}, None),
])
def test_throttle_wait_comes_from_the_body_or_the_header(body, headers, expected):
    error = ReplicateClient(api_key="t", base_url="http://x").error_for(FakeResponse(429, body, headers))
    assert isinstance(error, ProviderError) and error.retryable and error.code == "provider_busy"
    assert error.retry_after == expected


def test_output_urls_are_found_however_nested():
    output = [{"image": "https://a/1.png", "seed": 3}, ["https://a/2.webp", "not a url"], None]
    assert list(find_urls(output)) == ["https://a/1.png", "https://a/2.webp"]
    assert list(find_urls("data:image/png;base64,iVBO")) == ["data:image/png;base64,iVBO"]


def _upstream_cancel(app, run_id: str) -> str | None:
    with app.app_context():
        return db.session.get(Run, run_id).upstream_cancel


@pytest.mark.parametrize("where", ["api", "run page"])
def test_cancel_answers_at_once_while_the_provider_takes_its_time(fake, app, client, auth, user,
                                                                  worker, where):
    # The provider's cancel endpoint hangs for 10 s: the request that cancels must not wait.
    fake.state.data["outcome"] = "never"
    fake.state.script["cancel"].append({"sleep": 10})
    run = create(client, auth, "replicate/acme/painter")
    upstream_id = wait_for_upstream_id(app, run["id"])
    started = time.monotonic()
    if where == "api":
        answer = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth)
        assert answer.status_code == 200 and answer.get_json()["errorCode"] == "canceled"
    else:
        sign_in(client, user.email, "password123")
        assert client.post(f"/runs/{run['id']}/cancel").status_code == 303
    assert time.monotonic() - started < 5.0  # the provider hangs 10 s; we do not wait for it
    assert ledger(app, run["id"]) == [("charge", -3000), ("refund", 3000)]
    assert _upstream_cancel(app, run["id"]) in ("requested", "sent")
    wait_for_upstream_cancel(app, run["id"], "sent")
    # The worker's call may time out on the hang and be retried: at least one, and "sent".
    assert len(fake.state.calls_to("POST", f"/v1/predictions/{upstream_id}/cancel")) >= 1


def test_a_failed_upstream_cancel_is_retried_and_recorded(fake, app, client, auth, worker):
    fake.state.data["outcome"] = "never"
    fake.state.script["cancel"].append({"status": 503, "json": {"detail": "try later"}})
    run = create(client, auth, "replicate/acme/painter")
    upstream_id = wait_for_upstream_id(app, run["id"])
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200
    wait_for_upstream_cancel(app, run["id"], "sent")
    assert len(fake.state.calls_to("POST", f"/v1/predictions/{upstream_id}/cancel")) == 2
