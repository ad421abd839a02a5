"""POST /playground/files: the drop zone's upload, with the session and its CSRF token,
answering JSON in the API's shapes; and local/sketch drawing from a reference."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from runbase_web.extensions import db
from runbase_web.models import InputFile
from runbase_web.providers import local_media
from tests.web import PASSWORD


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def png(colour=(10, 120, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, "PNG")
    return buffer.getvalue()


def signed_in(app, make_user):
    """A browser session of a new account, and the CSRF token its pages carry."""
    user = make_user("carol@example.com", password=PASSWORD)
    browser = app.test_client()
    page = browser.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    browser.post("/auth/login", data={"email": user.email, "password": PASSWORD,
                                      "csrf_token": token})
    page = browser.get("/playground").get_data(as_text=True)
    return browser, re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)


def post(browser, data: bytes, headers: dict):
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), "image.png")})
    return browser.post("/playground/files", data=body, headers=headers,
                        content_type=f"multipart/form-data; boundary={boundary}")


def rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(InputFile))


def test_the_session_uploads_with_its_csrf_token(app, make_user):
    browser, token = signed_in(app, make_user)
    refused = post(browser, png(), {})
    assert refused.status_code == 400 and rows(app) == 0  # no token: Flask-WTF says no
    answer = post(browser, png(), {"X-CSRFToken": token})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    body = answer.get_json()
    assert set(body) == {"id", "url", "contentType", "size"} and rows(app) == 1
    with browser.get(body["url"].removeprefix("http://localhost")) as served:
        assert served.status_code == 200 and served.mimetype == "image/png"


def test_refusals_come_as_the_api_envelope(app, make_user):
    browser, token = signed_in(app, make_user)
    headers = {"X-CSRFToken": token}
    bad = post(browser, b"not an image", headers)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_input"
    app.config["UPLOAD_MAX_BYTES"] = 1024
    large = post(browser, png() + b"\0" * 4000, headers)
    assert large.status_code == 413 and large.get_json()["error"]["code"] == "payload_too_large"
    # Far past the limit the body is refused unread (uploads.js checks sizes before sending).
    assert post(browser, png() + b"\0" * 200_000, headers).status_code == 413
    assert rows(app) == 0


def test_visitors_cannot_upload(app):
    visitor = app.test_client()
    page = visitor.get("/playground").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    answer = post(visitor, png(), {"X-CSRFToken": token})
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "sign_in_required"
    assert rows(app) == 0


def test_sketch_takes_colours_and_layout_from_its_reference():
    left_red = Image.new("RGB", (200, 100), (220, 20, 20))
    left_red.paste((20, 20, 220), (100, 0, 200, 100))  # right half blue
    data = local_media.sketch_png("x", 7, 256, 256, reference=left_red)
    assert data == local_media.sketch_png("x", 7, 256, 256, reference=left_red)  # repeatable
    assert data != local_media.sketch_png("x", 7, 256, 256)
    with Image.open(io.BytesIO(data)) as image:
        r, _g, b = image.convert("RGB").getpixel((4, 4))
        r2, _g2, b2 = image.convert("RGB").getpixel((251, 4))
    assert r > b and b2 > r2  # red on the left, blue on the right, as in the reference
