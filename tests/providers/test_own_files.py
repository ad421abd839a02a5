"""Reference images that are this server's own files (uploads, and outputs passed on by
"Use as reference") reach providers straight from storage: the fake OpenAI edits endpoint
receives exactly the stored bytes, although their URLs are on this server's own address,
which the guarded fetcher refuses (loopback is not allowed here)."""
from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import select

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import InputFile
from tests.fakes import openai as fake_openai
from tests.fakes.server import FakeServer, FakeState
from tests.providers.support import create, finish, stop_soon, stored, upload

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake():
    state_ = FakeState()
    server = FakeServer(fake_openai.make_app(state_)).start()
    state_.data["url"] = server.url
    yield state_
    stop_soon(server)


@pytest.fixture
def app_config(app_config, fake):
    """The OpenAI provider on the fake; the fetcher keeps refusing loopback addresses."""
    app_config.update({"PROVIDER_ENV": {"OPENAI_API_KEY": "sk-test",
                                        "OPENAI_BASE_URL": fake.data["url"] + "/v1"},
                       "FETCH_ALLOW_LOOPBACK": False})
    return app_config


def image(fmt: str, colour=(240, 200, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buffer, fmt)
    return buffer.getvalue()


def stored_upload(app, url: str) -> bytes:
    with app.app_context():
        return state.storage(app).read(url.rsplit("/", 1)[1])


def test_uploads_and_outputs_reach_the_provider_from_storage(fake, app, client, auth, worker):
    jpeg_url = upload(client, auth, image("JPEG"), "photo.jpg")
    gif_url = upload(client, auth, image("GIF", (0, 90, 200)), "drawing.gif")
    sketch = finish(app, client, auth, create(client, auth, "local/sketch"))
    (output_url,) = sketch["output"]["urls"]
    assert jpeg_url.startswith("http://localhost/") and output_url.startswith("http://localhost/")

    run = finish(app, client, auth, create(client, auth, "openai/gpt-image-1",
                                           image_urls=[jpeg_url, gif_url, output_url]))
    assert run["status"] == "succeeded", run
    (sent,) = fake.data["edits"]
    jpeg, converted, output = sent
    assert jpeg == stored_upload(app, jpeg_url)  # exactly the stored (cleaned) JPEG
    assert converted == stored_upload(app, gif_url) and converted.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(converted)) as received:
        assert received.convert("RGB").getpixel((3, 3)) == (0, 90, 200)
    assert output == stored(client, output_url)


def test_a_stored_file_whose_bytes_are_gone_fails_the_run_as_invalid_input(
        fake, app, client, auth, worker):
    url = upload(client, auth, image("PNG"), "gone.png")
    with app.app_context():
        name = db.session.scalars(select(InputFile.name)).one()
        assert url.endswith("/" + name)
        state.storage(app).delete(name)
    run = finish(app, client, auth, create(client, auth, "openai/gpt-image-1", image_urls=[url]))
    assert run["status"] == "failed" and run["errorCode"] == "invalid_input", run
    assert "no longer stored" in run["error"]
    assert fake.calls_to("POST", "/v1/images/edits") == []


def test_other_urls_on_this_address_still_go_through_the_guarded_fetcher(
        fake, app, client, auth, worker):
    # Not a file of ours: the fetcher refuses the loopback address, as before.
    run = finish(app, client, auth, create(client, auth, "openai/gpt-image-1",
                                           image_urls=["http://127.0.0.1:1/elsewhere.png"]))
    assert run["status"] == "failed" and run["errorCode"] == "invalid_input", run
    assert fake.calls_to("POST", "/v1/images/edits") == []
