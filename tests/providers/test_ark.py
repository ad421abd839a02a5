"""BytePlus ModelArk through POST /api/v1/runs against the fake Ark: Seedream images (sync)
and Seedance video tasks (async), on both database backends."""
from __future__ import annotations

import base64
import functools
from types import SimpleNamespace

import pytest

from runbase_web.providers.ark import (ArkClient, SeedanceAdapter, SeedreamAdapter, size_for,
                                       upstream_for)
from runbase_web.providers.base import ProviderError
from tests.conftest import wait_for_run
from tests.fakes import ark as fake_ark
from tests.fakes.replicate import tiny_png
from tests.providers import support
from tests.providers.support import (
    PNG, assert_stored, create, ledger, restart_worker, start_fake, stop_soon,
    wait_for_upstream_cancel, wait_for_upstream_id, write_catalog)

KEY = "ark-test"
CREDIT = 10_000_000
MP4 = b"ftyp"
REF = "data:image/png;base64," + base64.b64encode(tiny_png((20, 120, 220))).decode()

#: Every refunded run here leaves the account at its starting credit.
refunded = functools.partial(support.refunded, credit=CREDIT)


@pytest.fixture
def fake(app_config):
    """The fake Ark, with the app pointed at it and loopback fetches allowed."""
    state, server = start_fake(fake_ark.make_app)
    app_config.update(PROVIDER_ENV={"ARK_API_KEY": KEY, "ARK_BASE_URL": server.url + "/api/v3"},
                      FETCH_ALLOW_LOOPBACK=True)
    yield SimpleNamespace(state=state, url=server.url)
    stop_soon(server)


@pytest.fixture
def user(make_user):
    """An account that can afford a 15 s 1080p Seedance 2.0 clip ($3.38)."""
    return make_user("alice@example.com", credit_micros=CREDIT)


@pytest.fixture
def short_deadline(fake, app_config, tmp_path):
    """Seedream 4.5 and Seedance 2.0 fast with a 3 s deadline (requested before `app`)."""
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [
        {"id": "bytedance/seedream-4.5", "deadline_seconds": 3},
        {"id": "bytedance/seedance-2-fast", "deadline_seconds": 3}])


# --- Seedream ------------------------------------------------------------------------------


@pytest.mark.parametrize("model, input_, expected", [
    ("bytedance/seedream-4.5", {"aspect_ratio": "16:9", "quality": "high"},
     {"model": "seedream-4-5-251128", "size": "5504x3040"}),
    ("bytedance/seedream-5-lite", {"aspect_ratio": "3:4", "image_urls": ["{url}/refs/a.png"]},
     {"model": "seedream-5-0-260128", "size": "1728x2304", "image": [REF]}),
])
def test_seedream_models_succeed_with_the_exact_request(fake, app, client, auth, worker, model,
                                                        input_, expected):
    input_ = {k: [u.format(url=fake.url) for u in v] if k == "image_urls" else v
              for k, v in input_.items()}
    run = create(client, auth, model, **input_)
    assert_stored(client, wait_for_run(app, run["id"]), PNG)
    [call] = fake.state.calls_to("POST", "/api/v3/images/generations")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.json == {"prompt": "a red fox in the snow", "response_format": "url",
                         "watermark": False, **expected}
    assert fake.state.data["downloaded"]
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_seedream_sizes_follow_quality_tiers_per_model():
    assert size_for("seedream-4-5-251128", {"aspect_ratio": "1:1"}) == "2048x2048"
    high = {"quality": "high"}
    assert size_for("seedream-4-5-251128", {"aspect_ratio": "21:9", **high}) == "6240x2656"
    assert size_for("seedream-5-0-260128", {"aspect_ratio": "16:9", **high}) == "4272x2400"


def test_seedream_base64_items_are_decoded_and_failed_items_skipped():
    adapter = SeedreamAdapter(ArkClient(api_key="k", base_url="http://ark.invalid"))
    outputs = adapter.outputs({"data": [
        {"error": {"code": "OutputImageSensitiveContentDetected", "message": "no"}},
        {"b64_json": base64.b64encode(tiny_png()).decode(), "size": "2048x2048"}]})
    assert [(o.content_type, o.data[:8]) for o in outputs] == [("image/png", PNG)]
    with pytest.raises(ProviderError) as refused:
        adapter.outputs({"data": [{"error": {"code": "OutputImageSensitiveContentDetected",
                                             "message": "no"}}]})
    assert refused.value.code == "content_rejected" and not refused.value.retryable


def test_seedream_sensitive_output_is_content_rejected_and_refunded(fake, app, client, auth, user,
                                                                    worker):
    fake.state.script["images"].append({"status": 400, "json": {"error": {
        "code": "OutputImageSensitiveContentDetected", "type": "BadRequest",
        "message": "The generated image may contain sensitive content. Request ID: x"}}})
    done = refunded(app, user, create(client, auth, "bytedance/seedream-4.5"), "content_rejected")
    assert "sensitive" in done.error


def test_seedream_rate_limit_then_success_charges_once(fake, app, client, auth, worker):
    fake.state.script["images"].append({"status": 429, "json": {"error": {
        "code": "RateLimitExceeded.EndpointRPMExceeded", "message": "Too many requests",
        "type": "TooManyRequests"}}})
    run = create(client, auth, "bytedance/seedream-4.5")
    assert_stored(client, wait_for_run(app, run["id"]), PNG)
    assert len(fake.state.calls_to("POST", "/api/v3/images/generations")) == 2
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_seedream_slower_than_the_deadline_times_out(short_deadline, app, client, auth, user,
                                                     worker, fake):
    fake.state.script["images"].append({"sleep": 6})
    refunded(app, user, create(client, auth, "bytedance/seedream-4.5"), "timeout")


def test_seedream_expired_output_url_fails_and_refunds(fake, app, client, auth, user, worker):
    fake.state.script["file"].append({"status": 404, "raw": "expired"})
    refunded(app, user, create(client, auth, "bytedance/seedream-4.5"), "output_unavailable")


# --- Seedance ------------------------------------------------------------------------------


def _text(prompt="a red fox in the snow"):
    return {"type": "text", "text": prompt}


def _frame(role):
    return {"type": "image_url", "image_url": {"url": REF}, "role": role}


@pytest.mark.parametrize("model, input_, expected", [
    ("bytedance/seedance-1-lite", {"resolution": "720p", "image_urls": ["{url}/refs/a.png"]},
     {"model": "seedance-1-0-lite-i2v-250428", "content": [_text(), _frame("first_frame")],
      "ratio": "16:9", "resolution": "720p", "duration": 5}),
    ("bytedance/seedance-1-pro", {"resolution": "1080p", "aspect_ratio": "21:9"},
     {"model": "seedance-1-0-pro-250528", "content": [_text()], "ratio": "21:9",
      "resolution": "1080p", "duration": 5}),
    ("bytedance/seedance-1.5-pro", {"duration": "12", "generate_audio": True,
                                    "image_urls": ["{url}/refs/a.png", "{url}/refs/b.png"]},
     {"model": "seedance-1-5-pro-251215", "ratio": "16:9", "resolution": "480p", "duration": 12,
      "generate_audio": True,
      "content": [_text(), _frame("first_frame"), _frame("last_frame")]}),
    ("bytedance/seedance-2", {"aspect_ratio": "adaptive", "resolution": "1080p", "duration": 15},
     {"model": "dreamina-seedance-2-0-260128", "content": [_text()], "ratio": "adaptive",
      "resolution": "1080p", "duration": 15, "generate_audio": False}),
    ("bytedance/seedance-2-fast", {"duration": 5, "resolution": "720p", "aspect_ratio": "16:9",
                                   "generate_audio": True},
     {"model": "dreamina-seedance-2-0-fast-260128", "content": [_text()], "ratio": "16:9",
      "resolution": "720p", "duration": 5, "generate_audio": True}),
])
def test_seedance_models_succeed_with_the_exact_task(fake, app, client, auth, worker, model,
                                                     input_, expected):
    fake.state.data["polls_needed"] = 2
    input_ = {k: [u.format(url=fake.url) for u in v] if k == "image_urls" else v
              for k, v in input_.items()}
    run = create(client, auth, model, **input_)
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    [call] = fake.state.calls_to("POST", "/api/v3/contents/generations/tasks")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.json == {**expected, "watermark": False}
    polls = fake.state.calls_to("GET", "/api/v3/contents/generations/tasks/")
    assert [c.path for c in polls] == [f"/api/v3/contents/generations/tasks/{done.upstream_id}"] * 2
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_lite_ids_switch_between_text_and_image_to_video():
    assert upstream_for("seedance-1-0-lite-t2v-250428", True) == "seedance-1-0-lite-i2v-250428"
    assert upstream_for("seedance-1-0-lite-i2v-250428", False) == "seedance-1-0-lite-t2v-250428"
    assert upstream_for("seedance-1-5-pro-251215", True) == "seedance-1-5-pro-251215"


@pytest.mark.parametrize("outcome, task_error, code", [
    ("fail", {"code": "OutputVideoSensitiveContentDetected", "message": "sensitive output"},
     "content_rejected"),
    ("expired", None, "provider_error"),
])
def test_seedance_final_task_errors_fail_and_refund(fake, app, client, auth, user, worker,
                                                    outcome, task_error, code):
    fake.state.data.update(outcome=outcome, task_error=task_error)
    done = refunded(app, user, create(client, auth, "bytedance/seedance-2-fast"), code)
    assert fake.state.data["submits"] == 1
    if task_error:
        assert task_error["message"] in done.error


def test_seedance_rate_limit_then_success_charges_once(fake, app, client, auth, worker):
    fake.state.script["create"].append({"status": 429, "json": {"error": {
        "code": "RateLimitExceeded.EndpointRPMExceeded", "message": "slow down",
        "type": "TooManyRequests"}}})
    run = create(client, auth, "bytedance/seedance-2-fast")
    assert_stored(client, wait_for_run(app, run["id"]), MP4, offset=4)
    assert len(fake.state.calls_to("POST", "/api/v3/contents/")) == 2
    assert fake.state.data["submits"] == 1
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_seedance_never_finishing_task_times_out_and_is_cancelled(short_deadline, app, client,
                                                                  auth, user, worker, fake):
    fake.state.data["outcome"] = "queued"
    done = refunded(app, user, create(client, auth, "bytedance/seedance-2-fast"), "timeout")
    wait_for_upstream_cancel(app, done.id)
    [delete] = fake.state.calls_to("DELETE", "/api/v3/contents/generations/tasks/")
    assert delete.path.endswith(done.upstream_id)
    assert fake.state.data["tasks"][done.upstream_id]["status"] == "cancelled"


def test_seedance_cancel_of_a_running_task_is_refused_and_ignored():
    class Refusing:
        """A client whose DELETE is refused, as Ark refuses to cancel a running task."""

        def request(self, method, path, **kwargs):
            """Remember the call, then refuse it."""
            self.call = (method, path)
            raise ProviderError("BytePlus ModelArk answered 400: running", code="invalid_input")

    client = Refusing()
    job = SimpleNamespace(upstream_id="cgt-1", seconds_left=lambda: 1.0)
    SeedanceAdapter(client).cancel(job)  # does not raise
    assert client.call == ("DELETE", "/contents/generations/tasks/cgt-1")


def test_seedance_worker_stopped_while_polling_resumes_the_same_task(fake, app, client, auth,
                                                                     worker):
    fake.state.data["polls_needed"] = 3
    run = create(client, auth, "bytedance/seedance-2-fast")
    upstream_id = wait_for_upstream_id(app, run["id"])
    restart_worker(app)
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    assert done.upstream_id == upstream_id and fake.state.data["submits"] == 1


def test_seedance_expired_video_url_fails_and_refunds(fake, app, client, auth, user, worker):
    fake.state.script["file"].append({"status": 404, "raw": "expired"})
    refunded(app, user, create(client, auth, "bytedance/seedance-2-fast"), "output_unavailable")
