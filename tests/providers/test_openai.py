"""The OpenAI Images adapter against the fake OpenAI API, through `POST /api/v1/runs` and the
embedded worker: the wire translation, stored files, and failure mapping with refunds."""
from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image

from runbase_web.providers.openai import CLASSIC_SIZES, GPT_IMAGE_2_SIZES, size_for
from runbase_web.catalog import Catalog
from tests.fakes import openai as fake_openai
from tests.fakes.server import FakeServer, FakeState
from tests.providers.support import (
    assert_failed_and_refunded, create, finish, ledger, stop_soon, stored)

KEY = "sk-test"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake():
    """The fake OpenAI API; yields its FakeState (with `.url` of the server in data)."""
    state = FakeState()
    server = FakeServer(fake_openai.make_app(state)).start()
    state.data["url"] = server.url
    yield state
    stop_soon(server)


@pytest.fixture
def app_config(app_config, fake):
    """Point the OpenAI provider at the fake; let the fetcher reach loopback servers."""
    app_config.update({"PROVIDER_ENV": {"OPENAI_API_KEY": KEY,
                                        "OPENAI_BASE_URL": fake.data["url"] + "/v1"},
                       "FETCH_ALLOW_LOOPBACK": True})
    return app_config


@pytest.fixture
def short_deadline(tmp_path, app_config):
    """gpt-image-2 with a 3 s deadline."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [{"id": "openai/gpt-image-2", "deadline_seconds": 3}]}))
    app_config["CATALOG_PATH"] = str(path)


# --- the size table ------------------------------------------------------------------------


def test_every_catalog_aspect_ratio_has_a_valid_size():
    """Every size we may send obeys the reference's rules for its model."""
    catalog = Catalog.load()
    for model_id in ("openai/gpt-image-1", "openai/gpt-image-1.5", "openai/gpt-image-2"):
        spec = catalog.get(model_id)
        tiers = spec.properties.get("resolution", {}).get("enum", ["1K"])
        for ratio in spec.properties["aspect_ratio"]["enum"]:
            for tier in tiers:
                size = size_for(spec.upstream, {"aspect_ratio": ratio, "resolution": tier})
                width, height = (int(side) for side in size.split("x"))
                a, b = (int(side) for side in ratio.split(":"))
                assert width * b == height * a, (model_id, ratio, size)  # exactly the ratio
                if spec.upstream == "gpt-image-2":
                    assert width % 16 == 0 and height % 16 == 0
                    assert max(width, height) <= 3840 and min(width, height) <= 2160
                    assert max(width, height) <= 3 * min(width, height)
                else:
                    assert size in CLASSIC_SIZES.values()


def area(size: str) -> int:
    width, height = size.split("x")
    return int(width) * int(height)


def test_resolution_tiers_grow():
    for ratio in GPT_IMAGE_2_SIZES["1K"]:
        areas = [area(GPT_IMAGE_2_SIZES[tier][ratio]) for tier in ("1K", "2K", "4K")]
        assert areas == sorted(areas) and len(set(areas)) == 3, ratio
    assert GPT_IMAGE_2_SIZES["2K"]["16:9"] == "2560x1440"  # the largest non-experimental size


# --- through the API -------------------------------------------------------------------------


@pytest.mark.parametrize("model, input_, wire", [
    ("openai/gpt-image-1", {}, {"size": "1024x1024"}),
    ("openai/gpt-image-1.5", {"aspect_ratio": "2:3", "quality": "high"},
     {"size": "1024x1536", "quality": "high"}),
    ("openai/gpt-image-2", {"aspect_ratio": "16:9", "resolution": "2K"}, {"size": "2560x1440"}),
])
def test_every_model_succeeds_with_a_stored_png(fake, app, client, auth, worker, model, input_, wire):
    body = finish(app, client, auth, create(client, auth, model, **input_))
    assert body["status"] == "succeeded", body
    (call,) = fake.calls_to("POST", "/v1/images/generations")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.json == {"model": model.split("/")[1], "prompt": "a red fox in the snow", "n": 1,
                         **wire}
    (url,) = body["output"]["urls"]
    assert stored(client, url).startswith(PNG_MAGIC)
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_reference_images_are_uploaded_as_multipart(fake, refs, app, client, auth, worker):
    urls = [refs["a.png"][0], refs["b.jpg"][0]]
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-2", image_urls=urls,
                                            aspect_ratio="4:3", resolution="4K"))
    assert body["status"] == "succeeded", body
    assert not fake.calls_to("POST", "/v1/images/generations")
    (call,) = fake.calls_to("POST", "/v1/images/edits")
    assert call.headers["Content-Type"].startswith("multipart/form-data")
    assert call.form == {"model": ["gpt-image-2"], "prompt": ["a red fox in the snow"], "n": ["1"],
                         "size": ["2880x2160"]}
    assert fake.data["edits"] == [[refs["a.png"][1], refs["b.jpg"][1]]]
    assert stored(client, body["output"]["urls"][0]).startswith(PNG_MAGIC)


def test_gif_reference_reaches_the_edits_endpoint_as_png(fake, refs, app, client, auth, worker):
    # /images/edits refuses GIFs (after a call we pay for); a still GIF is sent as PNG.
    urls = [refs["c.gif"][0], refs["b.jpg"][0]]
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-1", image_urls=urls))
    assert body["status"] == "succeeded", body
    (call,) = fake.calls_to("POST", "/v1/images/edits")
    converted, jpeg = fake.data["edits"][0]
    assert converted.startswith(PNG_MAGIC) and jpeg == refs["b.jpg"][1]  # JPEG goes as it is
    assert call.files["image[]"] == converted
    with Image.open(io.BytesIO(converted)) as image:
        assert image.size == (24, 16) and image.convert("RGB").getpixel((0, 0)) == (240, 200, 0)


@pytest.mark.parametrize("name, words", [("broken.gif", "is not an image that can be read"),
                                         ("anim.gif", "is animated")])
def test_unreadable_reference_fails_before_any_call(fake, refs, app, client, auth, worker, name,
                                                    words):
    urls = [refs["a.png"][0], refs[name][0]]
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-2", image_urls=urls))
    assert_failed_and_refunded(app, body, "invalid_input")
    assert f"Reference image 2 {words}" in body["error"]
    assert not fake.calls_to("POST", "/v1/images")


def test_unreachable_reference_image_fails_as_invalid_input(fake, refs, app, client, auth, worker):
    missing = refs["a.png"][0].replace("a.png", "missing.png")
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-1", image_urls=[missing]))
    assert_failed_and_refunded(app, body, "invalid_input")
    assert "Reference image 1" in body["error"]
    assert not fake.calls_to("POST", "/v1/images")


@pytest.mark.parametrize("answer, code", [
    (fake_openai.moderation_blocked(), "content_rejected"),
    (fake_openai.error(400, "Invalid value for 'size'.", code="invalid_value", param="size"),
     "invalid_input"),
    (fake_openai.error(401, "Incorrect API key provided.", code="invalid_api_key"), "provider_auth"),
    (fake_openai.error(429, "You exceeded your current quota.", "insufficient_quota",
                       "insufficient_quota"), "provider_auth"),
])
def test_final_errors_fail_at_once_and_refund(fake, app, client, auth, worker, answer, code):
    fake.script["images"].append(answer)
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-1"))
    assert_failed_and_refunded(app, body, code)
    assert answer[2]["error"]["message"] in body["error"]
    assert len(fake.calls_to("POST", "/v1/images")) == 1


def test_wrong_key_is_provider_auth(fake, app, client, auth, worker):
    fake.data["api_key"] = "sk-other"
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-1"))
    assert_failed_and_refunded(app, body, "provider_auth")


def test_rate_limit_is_retried_after_its_delay_with_one_charge(fake, app, client, auth, worker):
    fake.script["images"].append(fake_openai.error(
        429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded",
        headers={"retry-after-ms": "800", "retry-after": "1"}))
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-2"))
    assert body["status"] == "succeeded", body
    first, second = fake.data["times"]
    assert second - first >= 0.75  # retry-after-ms wins over retry-after
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_broken_json_and_503_are_retried(fake, app, client, auth, worker):
    fake.script["images"].extend([("broken",), fake_openai.error(
        503, "The engine is currently overloaded.", "server_error", headers={"retry-after-ms": "100"})])
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-1"))
    assert body["status"] == "succeeded", body
    assert len(fake.calls_to("POST", "/v1/images/generations")) == 3
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"])]


def test_slow_provider_past_the_deadline_fails_and_refunds(short_deadline, fake, app, client, auth,
                                                           worker):
    fake.script["images"].append(("sleep", 6))
    started = time.monotonic()
    body = finish(app, client, auth, create(client, auth, "openai/gpt-image-2"), timeout=15)
    assert time.monotonic() - started < 5.5  # our timeout, not the fake's answer, ended it
    assert_failed_and_refunded(app, body, "timeout")


def test_model_is_unavailable_without_its_key(app, client, auth):
    app.config["PROVIDER_ENV"] = {}
    response = client.post("/api/v1/runs", json={"model": "openai/gpt-image-2",
                                                 "input": {"prompt": "x"}}, headers=auth)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "model_not_found" and "OPENAI_API_KEY" in error["message"]
