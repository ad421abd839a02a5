"""Kling through POST /api/v1/runs against the fake Kling API (which verifies our JWT), on both
database backends."""
from __future__ import annotations

import base64
import functools
import json
from types import SimpleNamespace

import pytest

from runbase_web.providers.base import ProviderError
from runbase_web.providers.kling import KlingClient, make_jwt
from tests.conftest import wait_for_run
from tests.fakes import kling as fake_kling
from tests.fakes.replicate import tiny_png
from tests.providers import support
from tests.providers.support import (
    assert_stored, create, FakeResponse, ledger, restart_worker, start_fake, stop_soon,
    wait_for_upstream_id, write_catalog)

MODEL = "kling/kling-3.0"
CREDIT = 10_000_000
MP4 = b"ftyp"
FRAME = base64.b64encode(tiny_png((240, 200, 20))).decode()

#: Every refunded run here leaves the account at its starting credit.
refunded = functools.partial(support.refunded, credit=CREDIT)


@pytest.fixture
def fake(app_config):
    """The fake Kling API, with the app pointed at it and loopback fetches allowed."""
    state, server = start_fake(fake_kling.make_app)
    app_config.update(PROVIDER_ENV={"KLING_ACCESS_KEY": fake_kling.ACCESS_KEY,
                                    "KLING_SECRET_KEY": fake_kling.SECRET_KEY,
                                    "KLING_BASE_URL": server.url},
                      FETCH_ALLOW_LOOPBACK=True)
    yield SimpleNamespace(state=state, url=server.url)
    stop_soon(server)


@pytest.fixture
def user(make_user):
    """An account that can afford a 10 s pro clip ($1.20)."""
    return make_user("alice@example.com", credit_micros=CREDIT)


@pytest.fixture
def short_deadline(fake, app_config, tmp_path):
    """Kling 3.0 with a 3 s deadline (requested before `app`)."""
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [{"id": MODEL, "deadline_seconds": 3}])


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_jwt_is_hs256_with_the_documented_claims():
    token = make_jwt("ak", "sk", now=1_700_000_000)
    header = token.split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert _claims(token) == {"iss": "ak", "exp": 1_700_001_800, "nbf": 1_699_999_995}
    assert "=" not in token and make_jwt("ak", "other", now=1_700_000_000) != token


@pytest.mark.parametrize("input_, path, expected", [
    ({"mode": "pro", "duration": 10, "aspect_ratio": "9:16"}, "text2video",
     {"mode": "pro", "duration": "10", "aspect_ratio": "9:16"}),
    ({"mode": "4K", "duration": 3, "image_urls": ["{url}/refs/a.png", "{url}/refs/b.png"]},
     "image2video", {"mode": "4k", "duration": "3", "image": FRAME, "image_tail": FRAME}),
])
def test_kling_succeeds_with_the_exact_task(fake, app, client, auth, worker, input_, path,
                                            expected):
    fake.state.data["polls_needed"] = 2
    input_ = {k: [u.format(url=fake.url) for u in v] if k == "image_urls" else v
              for k, v in input_.items()}
    run = create(client, auth, MODEL, **input_)
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    [call] = fake.state.calls_to("POST", "/v1/videos/")
    assert call.path == f"/v1/videos/{path}"
    assert call.json == {"model_name": "kling-v3", "prompt": "a red fox in the snow", **expected}
    assert _claims(call.headers["Authorization"].split()[1])["iss"] == fake_kling.ACCESS_KEY
    polls = fake.state.calls_to("GET", "/v1/videos/")
    assert [c.path for c in polls] == [f"/v1/videos/{path}/{done.upstream_id}"] * 2
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_kling_frames_of_other_types_are_sent_as_png(fake, refs, app, client, auth, worker):
    # Kling takes PNG and JPEG frames only (the fake checks the bytes): a GIF is converted.
    run = create(client, auth, MODEL, image_urls=[refs["c.gif"][0], refs["b.jpg"][0]])
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    [call] = fake.state.calls_to("POST", "/v1/videos/")
    assert base64.b64decode(call.json["image"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert base64.b64decode(call.json["image_tail"]) == refs["b.jpg"][1]


@pytest.mark.parametrize("setup, code, words", [
    ({"outcome": "fail", "fail_msg": "Failure to pass the risk control system"},
     "content_rejected", "risk control"),
    ({"outcome": "fail", "fail_msg": "internal error"}, "provider_error", "internal error"),
    ({"script": {"status": 200, "json": {"code": 1301, "request_id": "r",
                                         "message": "content security policy triggered"}}},
     "content_rejected", "1301"),
    ({"script": {"status": 429, "json": {"code": 1102, "message": "resource pack exhausted",
                                         "request_id": "r"}}}, "provider_auth", "1102"),
    ({"secret_key": "someone-elses-secret"}, "provider_auth", "1002"),
])
def test_kling_final_errors_fail_and_refund(fake, app, client, auth, user, worker, setup, code,
                                            words):
    setup = dict(setup)  # parametrize values are shared by both backends' runs
    if "script" in setup:
        fake.state.script["create"].append(setup.pop("script"))
    fake.state.data.update(setup)
    done = refunded(app, user, create(client, auth, MODEL), code)
    assert words in done.error
    assert len(fake.state.calls_to("POST", "/v1/videos/")) == 1


@pytest.mark.parametrize("throttle", [
    {"status": 429, "json": {"code": 1303, "message": "parallel task over resource pack limit",
                             "request_id": "r"}},
    {"status": 200, "json": {"code": 1302, "message": "too many requests", "request_id": "r"}},
])
def test_kling_rate_limit_then_success_charges_once(fake, app, client, auth, worker, throttle):
    fake.state.script["create"].append(throttle)
    run = create(client, auth, MODEL)
    assert_stored(client, wait_for_run(app, run["id"]), MP4, offset=4)
    assert len(fake.state.calls_to("POST", "/v1/videos/")) == 2 and fake.state.data["submits"] == 1
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_kling_broken_and_failing_polls_are_retried(fake, app, client, auth, worker):
    fake.state.script["get"].extend([
        {"status": 503, "json": {"code": 5001, "message": "maintenance", "request_id": "r"}},
        {"status": 200, "raw": "{not json"}])
    run = create(client, auth, MODEL)
    assert_stored(client, wait_for_run(app, run["id"]), MP4, offset=4)
    assert fake.state.data["submits"] == 1


def test_kling_never_finishing_task_times_out_and_refunds(short_deadline, app, client, auth, user,
                                                          worker, fake):
    fake.state.data["outcome"] = "never"
    refunded(app, user, create(client, auth, MODEL), "timeout")
    assert fake.state.data["submits"] == 1


def test_kling_worker_stopped_while_polling_resumes_the_same_task(fake, app, client, auth, worker):
    fake.state.data["polls_needed"] = 3
    run = create(client, auth, MODEL, image_urls=[f"{fake.url}/refs/a.png"])
    upstream_id = wait_for_upstream_id(app, run["id"])
    restart_worker(app)
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    assert done.upstream_id == upstream_id and fake.state.data["submits"] == 1
    # Resumed on the family it was created on (the state committed with the id).
    assert {c.path for c in fake.state.calls_to("GET", "/v1/videos/")} == {
        f"/v1/videos/image2video/{upstream_id}"}


def test_kling_expired_video_url_fails_and_refunds(fake, app, client, auth, user, worker):
    fake.state.script["file"].append({"status": 404, "raw": "expired"})
    refunded(app, user, create(client, auth, MODEL), "output_unavailable")


@pytest.mark.parametrize("status, code, expected, retryable", [
    (429, 1303, "provider_busy", True), (429, 1101, "provider_auth", False),
    (401, 1004, "provider_auth", False), (400, 1201, "invalid_input", False),
    (504, 5002, "provider_error", True), (404, 1203, "provider_error", False),
])
def test_errors_are_classified_by_kling_code_not_http_status(status, code, expected, retryable):
    client = KlingClient(access_key="ak", secret_key="sk", base_url="http://kling.invalid")
    error = client.error_for(FakeResponse(status, {"code": code, "message": "m", "request_id": "r"}))
    assert isinstance(error, ProviderError)
    assert (error.code, error.retryable) == (expected, retryable)
