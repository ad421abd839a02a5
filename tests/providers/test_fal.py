"""fal.ai queue runs through POST /api/v1/runs, against the fake fal queue."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from runbase_web import state
from runbase_web.providers.base import ProviderError
from runbase_web.providers.fal import FalClient
from runbase_web.providers.media import data_uri
from tests.conftest import wait_for_run
from tests.fakes import replicate as fake_replicate
from tests.fakes import fal as fake_fal
from tests.providers.support import (
    PNG, assert_stored, balance, create, FakeResponse, ledger, restart_worker, start_fake,
    upload, wait_for_upstream_cancel, wait_for_upstream_id, write_catalog)

KEY = "fal-test"
FLUX = {
    "id": "fal/fal-ai/flux/dev", "name": "FLUX.1 [dev] on fal", "kind": "image",
    "adapter": "fal", "upstream": "fal-ai/flux/dev",
    "description": "An operator-added fal image endpoint.",
    "requires_env": ["FAL_KEY"], "deadline_seconds": 600, "max_attempts": 3,
    "input_schema": {
        "type": "object", "required": ["prompt"], "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1},
            "image_size": {"type": "string", "enum": ["square_hd", "landscape_16_9"],
                           "default": "square_hd"},
            "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
        },
    },
    "price": {"micros": 25000, "per": "num_images"},
}
KLING_ON_FAL = {
    "id": "fal/fal-ai/kling-video/v2/master/image-to-video", "name": "Kling on fal",
    "kind": "video", "adapter": "fal", "upstream": "fal-ai/kling-video/v2/master/image-to-video",
    "description": "An operator-added fal video endpoint.",
    "requires_env": ["FAL_KEY"], "deadline_seconds": 1800, "max_attempts": 3,
    "input_schema": {
        "type": "object", "required": ["prompt", "image_urls"], "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1},
            "duration": {"type": "string", "enum": ["5", "10"], "default": "5"},
            "image_urls": {"type": "array", "minItems": 1, "maxItems": 1,
                           "items": {"type": "string", "format": "uri"}},
        },
    },
    "input_map": {"image_urls": "image_url[0]"},
    "price": {"micros": 28000, "per": "duration"},
}


@pytest.fixture
def fake(app_config, tmp_path):
    """The fake fal queue, with the app pointed at it and two fal endpoints added."""
    state, server = start_fake(fake_fal.make_app)
    app_config.update(PROVIDER_ENV={"FAL_KEY": KEY, "FAL_QUEUE_URL": server.url},
                      FETCH_ALLOW_LOOPBACK=True,
                      CATALOG_PATH=write_catalog(tmp_path, [FLUX, KLING_ON_FAL]))
    yield SimpleNamespace(state=state, url=server.url)
    server.stop()


@pytest.fixture
def short_deadline(fake, app_config, tmp_path):
    """FLUX with a 3 s deadline."""
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [{**FLUX, "deadline_seconds": 3}])


def test_image_request_succeeds_with_a_stored_file_and_the_exact_input(fake, app, client, auth, worker):
    run = create(client, auth, "fal/fal-ai/flux/dev", image_size="landscape_16_9", num_images=2)
    assert run["costUsd"] == 50000
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, PNG)
    [submit] = fake.state.calls_to("POST", "/")
    assert submit.path == "/fal-ai/flux/dev"
    assert submit.headers["Authorization"] == f"Key {KEY}"
    assert submit.json == {"prompt": "a red fox in the snow", "image_size": "landscape_16_9",
                           "num_images": 2}
    # Status and result come from the URLs fal returned, which drop the endpoint's path.
    status_calls = fake.state.calls_to("GET", f"/fal-ai/flux/requests/{done.upstream_id}/status")
    assert len(status_calls) == 2  # 202 IN_QUEUE, then 200 COMPLETED
    assert len(fake.state.calls_to("GET", f"/fal-ai/flux/requests/{done.upstream_id}")) == 3


def test_video_request_stores_the_mp4(fake, app, client, auth, worker):
    fake.state.data["kind"] = "video"
    run = create(client, auth, "fal/fal-ai/kling-video/v2/master/image-to-video",
                 image_urls=["https://example.com/first-frame.png"], duration="10")
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, b"ftyp", offset=4)
    [submit] = fake.state.calls_to("POST", "/")
    assert submit.path == "/fal-ai/kling-video/v2/master/image-to-video"
    assert submit.json == {"prompt": "a red fox in the snow", "duration": "10",
                           "image_url": "https://example.com/first-frame.png"}


def test_an_upload_reaches_fal_inline(fake, app, client, auth, worker):
    """fal fetches file URLs itself, and an upload is served only to its owner: our own
    files go as data URIs instead."""
    url = upload(client, auth, fake_replicate.tiny_png(), "first-frame.png")
    run = create(client, auth, "fal/fal-ai/kling-video/v2/master/image-to-video",
                 image_urls=[url])
    assert wait_for_run(app, run["id"]).status == "succeeded"
    [submit] = fake.state.calls_to("POST", "/fal-ai/kling-video")
    with app.app_context():
        stored = state.storage(app).read(url.rsplit("/", 1)[1])
    assert submit.json["image_url"] == data_uri(stored, "image/png")


def test_result_error_fails_the_run_and_refunds(fake, app, client, auth, user, worker):
    fake.state.data["outcome"] = "fail"
    run = create(client, auth, "fal/fal-ai/flux/dev")
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and done.error_code == "content_rejected"
    assert "body.prompt: The prompt was flagged." in done.error
    assert ledger(app, run["id"]) == [("charge", -25000), ("refund", 25000)]
    assert balance(app, user) == 1_000_000


def test_completed_with_an_error_is_final(fake, app, client, auth, worker):
    fake.state.data["outcome"] = "error_status"
    done = wait_for_run(app, create(client, auth, "fal/fal-ai/flux/dev")["id"])
    assert done.status == "failed" and done.error_code == "provider_error"
    assert "Runner disconnected" in done.error
    assert fake.state.data["submits"] == 1


def test_throttled_submit_is_retried_with_one_charge(fake, app, client, auth, worker):
    fake.state.script["submit"].append({"status": 429, "json": {"detail": "Too many requests"},
                                        "headers": {"Retry-After": "0"}})
    run = create(client, auth, "fal/fal-ai/flux/dev")
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert len(fake.state.calls_to("POST", "/")) == 2 and fake.state.data["submits"] == 1
    assert ledger(app, run["id"]) == [("charge", -25000)]


def test_slow_and_broken_status_answers_are_retried(fake, app, client, auth, worker):
    fake.state.script["status"].extend([{"sleep": 0.5}, {"status": 502, "raw": "Bad gateway"},
                                        {"status": 202, "raw": "{"}])
    done = wait_for_run(app, create(client, auth, "fal/fal-ai/flux/dev")["id"])
    assert done.status == "succeeded", done.error
    assert fake.state.data["submits"] == 1


def test_never_finishing_request_times_out_is_canceled_and_refunded(short_deadline, fake, app, client,
                                                                    auth, user, worker):
    fake.state.data["outcome"] = "never"
    run = create(client, auth, "fal/fal-ai/flux/dev")
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "timeout"
    wait_for_upstream_cancel(app, run["id"])
    [cancel] = fake.state.calls_to("PUT", "/fal-ai/flux/requests/")
    assert cancel.path == f"/fal-ai/flux/requests/{done.upstream_id}/cancel"
    assert cancel.headers["Authorization"] == f"Key {KEY}"
    assert ledger(app, run["id"]) == [("charge", -25000), ("refund", 25000)]
    assert balance(app, user) == 1_000_000


def test_worker_stopped_while_polling_resumes_the_same_request(fake, app, client, auth, worker):
    fake.state.data["polls_needed"] = 3
    run = create(client, auth, "fal/fal-ai/flux/dev")
    upstream_id = wait_for_upstream_id(app, run["id"])
    restart_worker(app)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded", done.error
    assert done.upstream_id == upstream_id and fake.state.data["submits"] == 1


def test_queue_urls_on_another_host_are_not_followed():
    # Our key goes with every status request, so only URLs on the queue host are used.
    from runbase_web.providers.fal import FalAdapter
    adapter = FalAdapter(FalClient(api_key="k", base_url="https://queue.fal.run"))
    spec = SimpleNamespace(upstream="fal-ai/flux/dev")
    job = SimpleNamespace(spec=spec)
    body = {"status_url": "https://evil.example/steal"}
    assert adapter._queue_url(job, body, "status_url", "abc") == \
        "https://queue.fal.run/fal-ai/flux/requests/abc/status"
    body = {"status_url": "https://queue.fal.run/fal-ai/flux/requests/abc/status"}
    assert adapter._queue_url(job, body, "status_url", "abc") == body["status_url"]


def test_validation_detail_list_is_described():
    body = {"detail": [{"loc": ["body", "num_images"], "msg": "must be <= 4", "type": "less_than_equal"}]}
    error = FalClient(api_key="k", base_url="http://x").error_for(FakeResponse(422, body))
    assert isinstance(error, ProviderError) and not error.retryable
    assert error.code == "invalid_input" and "body.num_images: must be <= 4" in error.message
