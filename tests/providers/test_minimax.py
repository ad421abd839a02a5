"""MiniMax Hailuo through POST /api/v1/runs against the fake MiniMax API (business errors as
HTTP 200 with `base_resp.status_code`), on both database backends."""
from __future__ import annotations

import base64
import functools
from types import SimpleNamespace

import pytest

from tests.conftest import wait_for_run
from tests.fakes import minimax as fake_minimax
from tests.fakes.replicate import tiny_png
from tests.providers import support
from tests.providers.support import (
    assert_stored, create, ledger, restart_worker, start_fake, stop_soon,
    wait_for_upstream_id, write_catalog)

MODEL = "hailuo/pro"
KEY = fake_minimax.KEY
CREDIT = 1_000_000
MP4 = b"ftyp"
FRAME = "data:image/png;base64," + base64.b64encode(tiny_png((30, 200, 90))).decode()

#: Every refunded run here leaves the account at its starting credit.
refunded = functools.partial(support.refunded, credit=CREDIT)


@pytest.fixture
def fake(app_config):
    """The fake MiniMax API, with the app pointed at it and loopback fetches allowed."""
    state, server = start_fake(fake_minimax.make_app)
    app_config.update(PROVIDER_ENV={"MINIMAX_API_KEY": KEY, "MINIMAX_BASE_URL": server.url},
                      FETCH_ALLOW_LOOPBACK=True)
    yield SimpleNamespace(state=state, url=server.url)
    stop_soon(server)


@pytest.fixture
def short_deadline(fake, app_config, tmp_path):
    """Hailuo with a 3 s deadline (requested before `app`)."""
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [{"id": MODEL, "deadline_seconds": 3}])


@pytest.mark.parametrize("with_frame", [True, False])
def test_hailuo_succeeds_with_the_exact_task(fake, app, client, auth, worker, with_frame):
    input_ = {"image_urls": [f"{fake.url}/refs/a.png"]} if with_frame else {}
    run = create(client, auth, MODEL, **input_)
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    [call] = fake.state.calls_to("POST", "/v1/video_generation")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    expected = {"model": "MiniMax-Hailuo-2.3", "prompt": "a red fox in the snow", "duration": 6}
    assert call.json == ({**expected, "first_frame_image": FRAME} if with_frame else expected)
    queries = fake.state.calls_to("GET", "/v1/query/video_generation")
    assert [c.args for c in queries] == [{"task_id": done.upstream_id}] * 2
    [retrieve] = fake.state.calls_to("GET", "/v1/files/retrieve")
    task = fake.state.data["tasks"][done.upstream_id]
    assert retrieve.args == {"file_id": task["file_id"]}
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


@pytest.mark.parametrize("setup, code, words", [
    ({"script": {"status": 200, "json": {"task_id": "", "base_resp": {
        "status_code": 1026, "status_msg": "input new_sensitive"}}}}, "content_rejected", "1026"),
    ({"outcome": "sensitive"}, "content_rejected", "1027"),
    ({"outcome": "fail"}, "provider_error", "Fail"),
    ({"key": "someone-elses-key"}, "provider_auth", "1004"),
    ({"script": {"status": 200, "json": {"base_resp": {
        "status_code": 1008, "status_msg": "insufficient balance"}}}}, "provider_auth", "balance"),
])
def test_hailuo_final_errors_fail_and_refund(fake, app, client, auth, user, worker, setup, code,
                                             words):
    setup = dict(setup)  # parametrize values are shared by both backends' runs
    if "script" in setup:
        fake.state.script["create"].append(setup.pop("script"))
    fake.state.data.update(setup)
    done = refunded(app, user, create(client, auth, MODEL), code)
    assert words in done.error
    assert len(fake.state.calls_to("POST", "/v1/video_generation")) == 1


def test_hailuo_rate_limit_in_a_200_then_success_charges_once(fake, app, client, auth, worker):
    fake.state.script["create"].append({"status": 200, "json": {
        "task_id": "",
        "base_resp": {"status_code": 1002, "status_msg": "rate limit exceeded(RPM)"}}})
    run = create(client, auth, MODEL)
    assert_stored(client, wait_for_run(app, run["id"]), MP4, offset=4)
    assert len(fake.state.calls_to("POST", "/v1/video_generation")) == 2
    assert fake.state.data["submits"] == 1
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"])]


def test_hailuo_broken_and_throttled_polls_are_retried(fake, app, client, auth, worker):
    fake.state.script["query"].extend([
        {"status": 429, "json": {"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}},
        {"status": 200, "raw": "{not json"}])
    fake.state.script["retrieve"].append({"status": 502, "raw": "<html>bad gateway</html>"})
    run = create(client, auth, MODEL)
    assert_stored(client, wait_for_run(app, run["id"]), MP4, offset=4)
    assert fake.state.data["submits"] == 1


def test_hailuo_never_finishing_task_times_out_and_refunds(short_deadline, app, client, auth, user,
                                                           worker, fake):
    fake.state.data["outcome"] = "never"
    refunded(app, user, create(client, auth, MODEL), "timeout")
    assert fake.state.data["submits"] == 1


def test_hailuo_worker_stopped_while_polling_resumes_the_same_task(fake, app, client, auth, worker):
    fake.state.data["polls_needed"] = 3
    run = create(client, auth, MODEL)
    upstream_id = wait_for_upstream_id(app, run["id"])
    restart_worker(app)
    done = wait_for_run(app, run["id"])
    assert_stored(client, done, MP4, offset=4)
    assert done.upstream_id == upstream_id and fake.state.data["submits"] == 1


def test_hailuo_expired_download_url_fails_and_refunds(fake, app, client, auth, user, worker):
    fake.state.script["file"].append({"status": 404, "raw": "expired"})
    refunded(app, user, create(client, auth, MODEL), "output_unavailable")
