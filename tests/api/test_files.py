"""POST /api/v1/files and GET /api/v1/files/<name>: limits, types, conversion, metadata
removed, decompression bombs, owner checks, error codes, and nothing half-stored."""
from __future__ import annotations

import io
import random
import struct
import time
import zlib

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import InputFile, Run
from runbase_web.storage import LocalStorage
from tests.conftest import wait_for_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_bytes(fmt: str = "PNG", size=(40, 30), colour=(200, 40, 10), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt, **save)
    return buffer.getvalue()


def jpeg_with_gps() -> bytes:
    """A JPEG whose EXIF holds a camera, a GPS position and an orientation (rotate 90°)."""
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 6  # Orientation: the picture must be turned 90° clockwise to stand up
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}  # GPS IFD
    return image_bytes("JPEG", size=(40, 20), exif=exif.tobytes())


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header for a 400-megapixel image with (almost) no pixel data: opening it
    is cheap, decoding it would take gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_MAGIC + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def upload(client, auth, data: bytes, filename: str = "image.png", field: str = "file"):
    # Encoded here, in memory: the test client spools large bodies to a temporary file
    # that it never closes.
    boundary, body = encode_multipart({field: FileStorage(io.BytesIO(data), filename)})
    return client.post("/api/v1/files", headers=auth, data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def error_of(response) -> tuple[int, str]:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "code"}, body
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


def input_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(InputFile))


def stored_names(app) -> set[str]:
    root = state.storage(app).root
    return {path.name for path in root.iterdir()}


def test_upload_answers_the_file_object_and_serves_it_to_its_owner(app, client, auth):
    original = image_bytes()
    response = upload(client, auth, original)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {"id", "url", "contentType", "size"}
    assert body["id"].startswith("file_") and body["contentType"] == "image/png"
    assert body["url"].startswith("http://localhost/api/v1/files/") and body["url"].endswith(".png")
    path = body["url"].removeprefix("http://localhost")
    assert response.headers["Location"] == path
    with client.get(path, headers=auth) as served:
        assert served.status_code == 200 and served.mimetype == "image/png"
        assert len(served.data) == body["size"]
        assert "private" in served.headers["Cache-Control"]
        assert served.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        with Image.open(io.BytesIO(served.data)) as image:
            assert image.size == (40, 30) and image.getpixel((0, 0)) == (200, 40, 10)


def test_public_url_makes_the_url_absolute_on_it(app, client, auth):
    app.config["PUBLIC_URL"] = "https://runbase.example.org"
    body = upload(client, auth, image_bytes()).get_json()
    assert body["url"].startswith("https://runbase.example.org/api/v1/files/")


def test_only_the_owner_may_read_a_file(app, client, auth, make_user, make_key):
    path = "/api/v1/files/" + upload(client, auth, image_bytes()).get_json()["url"].rsplit("/", 1)[1]
    stranger = {"Authorization": f"Bearer {make_key(make_user('mallory@example.com'))}"}
    assert error_of(client.get(path, headers=stranger)) == (404, "not_found")
    assert error_of(client.get(path)) == (401, "missing_api_key")  # no key, no session
    assert error_of(client.get(path, headers={"Authorization": "Bearer sk-nope"})) == (
        401, "invalid_api_key")
    assert error_of(client.get("/api/v1/files/..%2Fsecret.png", headers=auth)) == (404, "not_found")


def test_the_owners_session_may_read_it_too(app, client, auth, user):
    path = "/api/v1/files/" + upload(client, auth, image_bytes()).get_json()["url"].rsplit("/", 1)[1]
    browser = app.test_client()
    assert browser.post("/auth/login", data={"email": user.email, "password": "password123"}
                        ).status_code in (302, 303)
    with browser.get(path) as served:
        assert served.status_code == 200 and served.data.startswith(PNG_MAGIC)


@pytest.mark.parametrize("fmt, content_type, magic", [
    ("JPEG", "image/jpeg", b"\xff\xd8\xff"), ("WEBP", "image/webp", b"RIFF"),
    ("PNG", "image/png", PNG_MAGIC)])
def test_web_types_keep_their_type(client, auth, fmt, content_type, magic):
    body = upload(client, auth, image_bytes(fmt)).get_json()
    assert body["contentType"] == content_type


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_stills_become_png(app, client, auth, fmt):
    body = upload(client, auth, image_bytes(fmt, colour=(0, 0, 255))).get_json()
    assert body["contentType"] == "image/png" and body["url"].endswith(".png")
    data = client.get(body["url"].removeprefix("http://localhost"), headers=auth).data
    assert data.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(data)) as image:
        assert image.convert("RGB").getpixel((5, 5)) == (0, 0, 255)


def test_exif_and_gps_are_gone_and_the_picture_stands_up(client, auth):
    original = jpeg_with_gps()
    with Image.open(io.BytesIO(original)) as before:
        assert before.getexif().get_ifd(0x8825)  # the test file really has GPS
    body = upload(client, auth, original, "holiday.jpg").get_json()
    data = client.get(body["url"].removeprefix("http://localhost"), headers=auth).data
    assert b"SpyCam" not in data and b"Exif" not in data
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and not image.getexif()
        assert image.size == (20, 40)  # the orientation was applied to the pixels


def test_png_text_chunks_are_gone(client, auth):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("Comment", "my home address")
    data = image_bytes("PNG", pnginfo=info)
    body = upload(client, auth, data).get_json()
    served = client.get(body["url"].removeprefix("http://localhost"), headers=auth).data
    assert b"my home address" not in served


@pytest.mark.parametrize("data, words", [
    (b"%PDF-1.4 not an image", "not an image that can be read"),
    (b"", "empty"),
    (image_bytes()[:60], "not an image that can be read"),  # truncated
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image that can be read"),
])
def test_other_files_are_refused(app, client, auth, data, words):
    response = upload(client, auth, data)
    assert error_of(response) == (400, "invalid_input")
    assert words in response.get_json()["error"]["message"]
    assert input_rows(app) == 0


def test_animated_images_are_refused(client, auth):
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    response = upload(client, auth, buffer.getvalue(), "anim.gif")
    assert error_of(response) == (400, "invalid_input")
    assert "animated" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("width, height", [(20_000, 20_000), (10_000, 6_000)])
def test_a_decompression_bomb_is_refused_without_decoding_it(app, client, auth, width, height):
    # 400 megapixels (Pillow's own limit refuses it) and 60 (ours does).
    started = time.monotonic()
    response = upload(client, auth, bomb_png(width, height))
    assert time.monotonic() - started < 2  # decoding 400 megapixels would take far longer
    assert error_of(response) == (400, "invalid_input")
    assert "megapixels" in response.get_json()["error"]["message"]
    assert input_rows(app) == 0


def test_too_large_files_are_413(app, client, auth):
    noisy = Image.effect_noise((300, 300), 90).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    app.config["UPLOAD_MAX_BYTES"] = buffer.tell() - 1000
    response = upload(client, auth, buffer.getvalue())
    assert error_of(response) == (413, "payload_too_large")
    assert "The file is larger than" in response.get_json()["error"]["message"]
    # Far over the limit: refused by the body limit before the file is read.
    response = upload(client, auth, b"\x00" * 400_000)
    assert error_of(response) == (413, "payload_too_large")
    assert input_rows(app) == 0


def test_twenty_megabytes_pass_the_json_body_limit(app, client, auth):
    # RUNBASE_MAX_BODY_BYTES (1 MB) is for JSON; uploads have their own limit.
    noisy = Image.effect_noise((1000, 1000), 90).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    assert buffer.tell() > app.config["MAX_CONTENT_LENGTH"]
    assert upload(client, auth, buffer.getvalue()).status_code == 201


def test_missing_part_and_missing_key(client, auth):
    assert error_of(upload(client, auth, image_bytes(), field="image")) == (400, "invalid_input")
    assert error_of(client.post("/api/v1/files", headers=auth, json={"file": "x"})) == (
        400, "invalid_input")
    assert error_of(upload(client, {}, image_bytes())) == (401, "missing_api_key")


class FailingStorage(LocalStorage):
    """A storage whose writes fail half-way: the bytes reach the disk, then an error."""

    def save(self, name: str, data: bytes) -> None:
        super().save(name, data)
        raise OSError("disk went away")


def test_a_storage_failure_leaves_no_file_and_no_row(app, client, auth):
    before = stored_names(app)
    app.extensions[state.STORAGE] = FailingStorage(state.storage(app).root)
    client.application.testing = False  # answer the error instead of raising it here
    response = upload(client, auth, image_bytes())
    assert error_of(response) == (500, "internal_error")
    assert input_rows(app) == 0
    assert stored_names(app) == before


def test_a_failed_commit_leaves_no_file(app, client, auth, monkeypatch):
    from sqlalchemy.orm import Session
    before = stored_names(app)

    def refuse(self):
        raise RuntimeError("commit refused")
    monkeypatch.setattr(Session, "commit", refuse)
    client.application.testing = False
    response = upload(client, auth, image_bytes())
    monkeypatch.undo()
    assert error_of(response) == (500, "internal_error")
    assert input_rows(app) == 0
    assert stored_names(app) == before


# --- in runs -------------------------------------------------------------------------------


def sketch(client, auth, urls):
    return client.post("/api/v1/runs", headers=auth, json={
        "model": "local/sketch", "input": {"prompt": "from my photo", "image_urls": urls}})


def test_another_accounts_file_is_invalid_input(app, client, auth, make_user, make_key):
    mine = upload(client, auth, image_bytes()).get_json()["url"]
    other = {"Authorization": f"Bearer {make_key(make_user('bob@example.com'))}"}
    response = sketch(client, other, [mine])
    assert error_of(response) == (400, "invalid_input")
    assert "not one of your uploaded files" in response.get_json()["error"]["message"]
    missing = mine.rsplit("/", 1)[0] + "/" + "A" * 32 + ".png"
    assert error_of(sketch(client, auth, [missing])) == (400, "invalid_input")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run)) == 0


def test_a_run_reads_its_upload_from_storage(app, client, auth, worker):
    # The upload's URL is on this server (http://localhost): the guarded fetcher would
    # refuse it; the adapter reads it from storage instead.
    red = upload(client, auth, image_bytes(size=(64, 64), colour=(250, 0, 0))).get_json()["url"]
    created = sketch(client, auth, [red])
    assert created.status_code == 201, created.get_json()
    run = wait_for_run(app, created.get_json()["id"])
    assert run.status == "succeeded", run.error
    (url,) = client.get(f"/api/v1/runs/{run.id}", headers=auth).get_json()["output"]["urls"]
    with Image.open(io.BytesIO(client.get(url.removeprefix("http://localhost")).data)) as image:
        pixels = list(image.convert("RGB").get_flattened_data())
    red = sum(1 for r, g, b in pixels if r > 180 and g < 90 and b < 90)
    assert red > len(pixels) // 4  # the background took the reference's colour


def test_damaged_files_are_refused_never_a_crash():
    # Random damage to real files of every accepted format: cleaned, or invalid_input.
    from runbase_web.errors import RunbaseError
    from runbase_web.services.uploads import clean_image
    rng = random.Random(13)
    originals = [image_bytes(fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")]
    originals.append(jpeg_with_gps())
    for _ in range(400):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            clean_image(bytes(data))
        except RunbaseError as error:
            assert error.code == "invalid_input"
