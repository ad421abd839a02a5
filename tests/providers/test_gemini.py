"""The Gemini adapters (Nano Banana images, Veo video) against the fake Gemini API, through
`POST /api/v1/runs` and the embedded worker: translation, stored files, refusals that come
as HTTP 200, RetryInfo waits, deadlines, and resuming a Veo operation after a worker stops."""
from __future__ import annotations

import base64
import json
import time

import pytest

from runbase_web import recipe
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.providers.gemini import GeminiClient, parse_duration
from runbase_web.state import WORKER
from runbase_web.worker import Worker
from tests.fakes import gemini as fake_gemini
from tests.fakes.server import FakeServer, FakeState
from tests.providers.support import (
    assert_failed_and_refunded, create, finish, ledger, start_fake, stop_soon, stored)
# Shared run helpers, and the loopback reference-image server (`refs`, a fixture).

KEY = "gm-test"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake():
    """The fake Gemini API; yields its FakeState (server URL in data["url"])."""
    state = FakeState()
    server = FakeServer(fake_gemini.make_app(state)).start()
    state.data["url"] = server.url
    yield state
    stop_soon(server)


@pytest.fixture
def app_config(app_config, fake):
    """Point Gemini at the fake; let the fetcher reach loopback servers."""
    app_config.update({"PROVIDER_ENV": {"GEMINI_API_KEY": KEY,
                                        "GEMINI_BASE_URL": fake.data["url"] + "/v1beta"},
                       "FETCH_ALLOW_LOOPBACK": True})
    return app_config


@pytest.fixture
def user(make_user):
    """An account that can afford a Veo clip ($1.20)."""
    return make_user("alice@example.com", credit_micros=10_000_000)


@pytest.fixture
def guarded(app_config):
    """The fetcher as in production: loopback refused (request before `app`)."""
    app_config["FETCH_ALLOW_LOOPBACK"] = False


@pytest.fixture
def short_deadlines(tmp_path, app_config):
    """nano-banana and veo-3 with a 3 s deadline (requested before `app`)."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [{"id": "google/nano-banana", "deadline_seconds": 3},
                                           {"id": "google/veo-3", "deadline_seconds": 3}]}))
    app_config["CATALOG_PATH"] = str(path)


def generate_calls(fake) -> list:
    return [c for c in fake.calls_to("POST", "/v1beta/models/") if c.path.endswith(":generateContent")]


def predict_calls(fake) -> list:
    return [c for c in fake.calls_to("POST", "/v1beta/models/") if c.path.endswith(":predictLongRunning")]


def test_retry_delay_is_a_protobuf_duration():
    assert parse_duration("12s") == 12 and parse_duration("45.837906927s") == pytest.approx(45.84, 0.01)
    assert parse_duration({"seconds": 3, "nanos": 500_000_000}) == 3.5
    assert parse_duration("soon") is None


def test_the_key_goes_only_to_the_api_host_when_downloading():
    client = GeminiClient(api_key="k", base_url="https://generativelanguage.googleapis.com/v1beta")
    uri = "https://generativelanguage.googleapis.com/v1beta/files/abc:download?alt=media"
    assert client.download_headers(uri) == {"x-goog-api-key": "k"}
    assert client.download_headers("https://files.example.com/abc.mp4") == {}


# --- Nano Banana ---------------------------------------------------------------------------


@pytest.mark.parametrize("model, input_, upstream, image_config", [
    ("google/nano-banana", {"aspect_ratio": "16:9"}, "gemini-2.5-flash-image", {"aspectRatio": "16:9"}),
    ("google/nano-banana-2", {"aspect_ratio": "3:2", "resolution": "2K"},
     "gemini-3.1-flash-image-preview", {"aspectRatio": "3:2", "imageSize": "2K"}),
    ("google/nano-banana-pro", {"aspect_ratio": "auto", "resolution": "4K"},
     "gemini-3-pro-image-preview", {"imageSize": "4K"}),
])
def test_every_image_model_succeeds_with_the_final_image(fake, app, client, auth, worker, model,
                                                         input_, upstream, image_config):
    body = finish(app, client, auth, create(client, auth, model, **input_))
    assert body["status"] == "succeeded", body
    (call,) = generate_calls(fake)
    assert call.path == f"/v1beta/models/{upstream}:generateContent"
    assert call.headers["X-Goog-Api-Key"] == KEY
    assert call.json["contents"] == [{"role": "user", "parts": [{"text": "a red fox in the snow"}]}]
    assert call.json["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert call.json["generationConfig"].get("imageConfig", {}) == image_config
    (url,) = body["output"]["urls"]
    # The stored PNG is the provider's (not the thought image before it) plus our recipe chunk.
    assert recipe.strip_png_recipe(stored(client, url)) == fake.data["last_image"]
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_reference_images_reach_gemini_as_inline_data(fake, refs, app, client, auth, worker):
    urls = [refs["a.png"][0], refs["b.jpg"][0]]
    body = finish(app, client, auth, create(client, auth, "google/nano-banana", image_urls=urls))
    assert body["status"] == "succeeded", body
    (call,) = generate_calls(fake)
    parts = call.json["contents"][0]["parts"]
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/png", "image/jpeg"]
    assert [base64.b64decode(p["inlineData"]["data"]) for p in parts[1:]] == \
        [refs["a.png"][1], refs["b.jpg"][1]]
    assert fake.data["references"] == [[refs["a.png"][1], refs["b.jpg"][1]]]


def test_gif_reference_reaches_gemini_as_png(fake, refs, app, client, auth, worker):
    # inlineData takes PNG, JPEG, WebP, HEIC and HEIF only: a still GIF is sent as PNG.
    body = finish(app, client, auth, create(client, auth, "google/nano-banana",
                                            image_urls=[refs["c.gif"][0]]))
    assert body["status"] == "succeeded", body
    (call,) = generate_calls(fake)
    (part,) = call.json["contents"][0]["parts"][1:]
    assert part["inlineData"]["mimeType"] == "image/png"
    assert base64.b64decode(part["inlineData"]["data"]).startswith(PNG_MAGIC)


def test_unreadable_reference_fails_before_any_call(fake, refs, app, client, auth, worker):
    body = finish(app, client, auth, create(client, auth, "google/nano-banana-2",
                                            image_urls=[refs["broken.gif"][0]]))
    assert_failed_and_refunded(app, body, "invalid_input")
    assert "Reference image 1 is not an image that can be read" in body["error"]
    assert not generate_calls(fake)


@pytest.mark.parametrize("refusal, code", [
    ("blocked_prompt", "content_rejected"),
    ("image_safety", "content_rejected"),
    ("text_only", "provider_error"),
])
def test_http_200_without_an_image_fails_and_refunds(fake, app, client, auth, worker, refusal, code):
    fake.script["generate"].append((refusal,))
    body = finish(app, client, auth, create(client, auth, "google/nano-banana-2"))
    assert_failed_and_refunded(app, body, code)
    assert len(generate_calls(fake)) == 1  # a refusal is final, not retried
    expected = {"blocked_prompt": "PROHIBITED_CONTENT", "image_safety": "IMAGE_SAFETY",
                "text_only": "without an image"}[refusal]
    assert expected in body["error"]


@pytest.mark.parametrize("answer, code", [
    (fake_gemini.invalid_argument("Unsupported aspect ratio: 7:5."), "invalid_input"),
    (fake_gemini.rate_limited("1s", per_day=True), "provider_busy"),
    (fake_gemini.error(403, "The caller does not have permission.", "PERMISSION_DENIED"),
     "provider_auth"),
])
def test_final_errors_fail_at_once_and_refund(fake, app, client, auth, worker, answer, code):
    fake.script["generate"].append(answer)
    body = finish(app, client, auth, create(client, auth, "google/nano-banana"))
    assert_failed_and_refunded(app, body, code)
    assert answer[2]["error"]["message"] in body["error"]
    assert len(generate_calls(fake)) == 1


def test_invalid_key_is_a_400_mapped_to_provider_auth(fake, app, client, auth, worker):
    fake.data["api_key"] = "another-key"
    body = finish(app, client, auth, create(client, auth, "google/nano-banana-pro"))
    assert_failed_and_refunded(app, body, "provider_auth")
    assert "API key not valid" in body["error"]


def test_rate_limit_waits_for_retry_info_with_one_charge(fake, app, client, auth, worker):
    fake.script["generate"].append(fake_gemini.rate_limited("1.2s"))
    body = finish(app, client, auth, create(client, auth, "google/nano-banana"))
    assert body["status"] == "succeeded", body
    (_, first), (_, second) = fake.data["times"]
    assert second - first >= 1.15
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_overload_is_retried(fake, app, client, auth, worker):
    fake.script["generate"].append(
        fake_gemini.error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE"))
    body = finish(app, client, auth, create(client, auth, "google/nano-banana-2"))
    assert body["status"] == "succeeded", body
    assert len(generate_calls(fake)) == 2
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_slow_image_past_the_deadline_fails_and_refunds(short_deadlines, fake, app, client, auth,
                                                        worker):
    fake.script["generate"].append(("sleep", 6))
    started = time.monotonic()
    body = finish(app, client, auth, create(client, auth, "google/nano-banana"), timeout=15)
    assert time.monotonic() - started < 5.5  # our timeout, not the fake's answer, ended it
    assert_failed_and_refunded(app, body, "timeout")


def test_models_are_unavailable_without_the_key(app, client, auth):
    app.config["PROVIDER_ENV"] = {"GEMINI_BASE_URL": "http://127.0.0.1:9"}
    for model in ("google/nano-banana", "google/veo-3"):
        response = client.post("/api/v1/runs", json={"model": model, "input": {"prompt": "x"}},
                               headers=auth)
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["code"] == "model_not_found" and "GEMINI_API_KEY" in error["message"]


# --- Veo -------------------------------------------------------------------------------------


def test_veo_submits_once_polls_and_stores_the_mp4(fake, refs, app, client, auth, worker):
    fake.data["done_after"] = 2
    urls = [refs["a.png"][0], refs["b.jpg"][0]]
    body = finish(app, client, auth, create(client, auth, "google/veo-3", aspect_ratio="9:16",
                                            resolution="1080p", image_urls=urls), timeout=30)
    assert body["status"] == "succeeded", body
    (call,) = predict_calls(fake)
    assert call.path == "/v1beta/models/veo-3.1-fast-generate-preview:predictLongRunning"
    assert call.headers["X-Goog-Api-Key"] == KEY
    assert call.json["parameters"] == {"aspectRatio": "9:16", "resolution": "1080p",
                                       "durationSeconds": 8, "sampleCount": 1}
    (operation,) = fake.data["operations"].values()
    assert operation["polls"] == 2 and operation["frames"] == [refs["a.png"][1], refs["b.jpg"][1]]
    instance = call.json["instances"][0]
    assert instance["prompt"] == "a red fox in the snow"
    assert instance["image"]["mimeType"] == "image/png" and instance["lastFrame"]["mimeType"] == "image/jpeg"
    (download,) = fake.calls_to("GET", "/v1beta/files/")
    assert download.headers["X-Goog-Api-Key"] == KEY  # the URI needs the key
    assert len(fake.calls_to("GET", "/storage/")) == 1
    (url,) = body["output"]["urls"]
    assert stored(client, url)[4:8] == b"ftyp"
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_veo_frames_of_other_types_are_sent_as_png(fake, refs, app, client, auth, worker):
    urls = [refs["c.gif"][0], refs["b.jpg"][0]]
    body = finish(app, client, auth, create(client, auth, "google/veo-3", image_urls=urls), timeout=30)
    assert body["status"] == "succeeded", body
    instance = predict_calls(fake)[0].json["instances"][0]
    assert instance["image"]["mimeType"] == "image/png"
    assert base64.b64decode(instance["image"]["bytesBase64Encoded"]).startswith(PNG_MAGIC)
    assert instance["lastFrame"]["mimeType"] == "image/jpeg"


def test_veo_unreadable_frame_fails_before_any_call(fake, refs, app, client, auth, worker):
    body = finish(app, client, auth, create(client, auth, "google/veo-3",
                                            image_urls=[refs["a.png"][0], refs["broken.gif"][0]]))
    assert_failed_and_refunded(app, body, "invalid_input")
    assert not predict_calls(fake)


def test_veo_video_on_the_configured_api_host_is_downloaded_with_the_key(guarded, fake, app,
                                                                         client, auth, worker):
    # GEMINI_BASE_URL is a loopback server here: the API origin the operator chose is
    # trusted like the API calls to it, although the guard refuses loopback URLs otherwise.
    body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=30)
    assert body["status"] == "succeeded", body
    (download,) = fake.calls_to("GET", "/v1beta/files/")
    assert download.headers["X-Goog-Api-Key"] == KEY
    assert len(fake.calls_to("GET", "/storage/")) == 1  # the redirect, on the same origin
    assert stored(client, body["output"]["urls"][0])[4:8] == b"ftyp"
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_veo_video_on_another_loopback_port_is_still_refused(guarded, fake, app, client, auth,
                                                             worker):
    other_state, other = start_fake(fake_gemini.make_app)
    fake.data["video_base"] = other.url  # same host, another port: not the API origin
    try:
        body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=30)
    finally:
        stop_soon(other)
    assert_failed_and_refunded(app, body, "output_unavailable")
    assert "is not allowed" in body["error"]
    assert other_state.calls == []  # refused before connecting: the key never went there


def test_veo_resumes_the_same_operation_after_the_worker_stops(fake, app, client, auth, worker):
    fake.data["done_after"] = 4
    run = create(client, auth, "google/veo-3")
    deadline = time.monotonic() + 10
    while True:
        with app.app_context():
            upstream_id = db.session.get(Run, run["id"]).upstream_id
        if upstream_id or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert upstream_id and upstream_id.startswith("models/veo-3.1-fast-generate-preview/operations/")
    app.extensions.pop(WORKER).stop(wait=False)  # crash between polls: nothing is in flight
    app.extensions[WORKER] = Worker(app, threads=2).start()
    body = finish(app, client, auth, run, timeout=30)
    assert body["status"] == "succeeded", body
    assert len(predict_calls(fake)) == 1
    assert fake.data["operations"][upstream_id]["polls"] == 4
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


@pytest.mark.parametrize("outcome, code, words", [
    ("rai", "content_rejected", "not been charged"),
    ("error", "invalid_input", "could not be processed"),
])
def test_veo_failed_operation_fails_and_refunds(fake, app, client, auth, worker, outcome, code, words):
    fake.data["outcome"] = outcome
    body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=30)
    assert_failed_and_refunded(app, body, code)
    assert words in body["error"]
    assert len(predict_calls(fake)) == 1


def test_veo_expired_video_fails_as_output_unavailable(fake, app, client, auth, worker):
    fake.data["expire_seconds"] = 0  # the file is gone before we ask for it
    body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=30)
    assert_failed_and_refunded(app, body, "output_unavailable")


def test_veo_rate_limit_on_submit_is_retried(fake, app, client, auth, worker):
    fake.script["predict"].append(fake_gemini.rate_limited("0.5s"))
    body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=30)
    assert body["status"] == "succeeded", body
    assert len(predict_calls(fake)) == 2 and len(fake.data["operations"]) == 1
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_veo_broken_poll_answer_is_polled_again(fake, app, client, auth, worker):
    fake.script["operation"].append(("broken",))
    body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=30)
    assert body["status"] == "succeeded", body
    assert len(predict_calls(fake)) == 1
    assert len(fake.calls_to("GET", "/v1beta/models/")) == 2
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_veo_past_the_deadline_fails_and_refunds(short_deadlines, fake, app, client, auth, worker):
    fake.data["outcome"] = "never"
    started = time.monotonic()
    body = finish(app, client, auth, create(client, auth, "google/veo-3"), timeout=15)
    assert time.monotonic() - started < 6
    assert_failed_and_refunded(app, body, "timeout")
    assert len(predict_calls(fake)) == 1
