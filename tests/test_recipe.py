"""The run recipe in PNG outputs (runbase_web/recipe.py) and the worker's hook."""
from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image

from runbase_web import recipe
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.providers import local_media
from tests.support.png_recipe import MAX_PNG_BYTES, read_png_recipe
from tests.conftest import wait_for_run
from tests.web import sign_in

RECIPE = {"model": "local/sketch", "input": {"prompt": "un café à Zürich ☕", "seed": 7},
          "run": "https://runbase.example/runs/run_abc", "runId": "run_abc"}


def png(color=(200, 30, 90), size=(9, 5), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG", **save)
    return out.getvalue()


def chunk_types(data: bytes) -> list[bytes]:
    return [kind for kind, _start, _end in recipe.png_chunks(data)]


def raw_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_chunk_before_iend(data: bytes, chunk: bytes) -> bytes:
    return data[:-12] + chunk + data[-12:]


def test_round_trip_keeps_pixels_and_opens_in_pillow():
    original = png()
    embedded = recipe.embed_png_recipe(original, RECIPE)
    assert read_png_recipe(embedded) == RECIPE
    assert read_png_recipe(original) is None
    image = Image.open(io.BytesIO(embedded))
    image.load()  # Pillow checks every CRC while loading
    assert image.tobytes() == Image.open(io.BytesIO(original)).tobytes()
    assert json.loads(image.text["runbase"]) == RECIPE


def test_chunk_goes_just_before_iend_and_image_data_is_copied_verbatim():
    original = png()
    embedded = recipe.embed_png_recipe(original, RECIPE)
    types = chunk_types(embedded)
    assert types[-2:] == [b"iTXt", b"IEND"] and types[:-2] == chunk_types(original)[:-1]
    # Everything before IEND is the original, byte for byte: no re-encoding.
    assert embedded.startswith(original[:-12]) and embedded.endswith(original[-12:])


def test_embedding_again_replaces_the_old_recipe():
    once = recipe.embed_png_recipe(png(), RECIPE)
    twice = recipe.embed_png_recipe(once, {"model": "local/test", "input": {}})
    assert chunk_types(twice).count(b"iTXt") == 1
    assert read_png_recipe(twice) == {"model": "local/test", "input": {}}
    assert read_png_recipe(recipe.strip_png_recipe(twice)) is None


def test_other_text_chunks_are_kept_and_ignored():
    base = with_chunk_before_iend(png(), raw_chunk(b"tEXt", b"Comment\x00hello"))
    embedded = recipe.embed_png_recipe(base, RECIPE)
    assert Image.open(io.BytesIO(embedded)).text["Comment"] == "hello"
    assert read_png_recipe(embedded) == RECIPE


@pytest.mark.parametrize("chunk", [
    raw_chunk(b"tEXt", b"runbase\x00" + json.dumps({"model": "m", "input": {}}).encode()),
    raw_chunk(b"zTXt", b"runbase\x00\x00" + zlib.compress(b'{"model": "m", "input": {}}')),
    raw_chunk(b"iTXt", b"runbase\x00\x01\x00en\x00\x00" + zlib.compress(b'{"model": "m", "input": {}}')),
])
def test_reads_text_compressed_and_international_chunks(chunk):
    assert read_png_recipe(with_chunk_before_iend(png(), chunk)) == {"model": "m", "input": {}}


@pytest.mark.parametrize("data", [
    b"", b"not a png", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xffIHDR",
    with_chunk_before_iend(png(), raw_chunk(b"tEXt", b"runbase\x00not json")),
    with_chunk_before_iend(png(), raw_chunk(b"tEXt", b"runbase\x00[1, 2]")),
    with_chunk_before_iend(png(), raw_chunk(b"zTXt", b"runbase\x00\x00" + b"\x78garbage")),
    # A zlib bomb: 10 MB of spaces inflates past the cap and is refused.
    with_chunk_before_iend(png(), raw_chunk(b"zTXt", b"runbase\x00\x00" + zlib.compress(b" " * 10_000_000))),
    with_chunk_before_iend(png(), raw_chunk(b"tEXt", b"runbase\x00" + b"{" * (recipe.MAX_RECIPE_BYTES + 200))),
])
def test_reading_is_tolerant(data):
    assert read_png_recipe(data) is None


def test_read_refuses_huge_inputs_without_scanning():
    assert read_png_recipe(b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_PNG_BYTES + 1)) is None


def test_embed_refuses_what_is_not_a_png():
    with pytest.raises(ValueError):
        recipe.embed_png_recipe(b"\xff\xd8\xff not a png", RECIPE)
    with pytest.raises(ValueError):
        recipe.embed_png_recipe(png()[:-12], RECIPE)  # no IEND


def test_recipe_for_run_uses_the_public_url():
    run = Run(id="run_x", model="local/test", input={"prompt": "p"})
    assert recipe.recipe_for_run(run, "https://rb.example/") == {
        "model": "local/test", "input": {"prompt": "p"}, "run": "https://rb.example/runs/run_x",
        "runId": "run_x"}


# --- the worker stores PNG outputs with their recipe -----------------------------------------


@pytest.fixture
def app_config():
    return {"PUBLIC_URL": "https://runbase.example"}


def test_a_sketch_run_stores_its_recipe_and_the_same_pixels(app, client, user, worker):
    sign_in(client, user.email)
    response = client.post("/playground/runs", headers={"HX-Request": "true"}, data={
        "model": "local/sketch", "prompt": "a red kite", "seed": "1234", "aspect_ratio": "1:1",
        "resolution": "512"})
    assert response.status_code == 201
    run_id = response.text.split('id="run-', 1)[1].split('"', 1)[0]
    run = wait_for_run(app, run_id)
    assert run.status == "succeeded"
    with client.get(run.output_urls[0]) as download:
        stored = download.data
    assert read_png_recipe(stored) == {
        "model": "local/sketch", "input": run.input,
        "run": f"https://runbase.example/runs/{run_id}", "runId": run_id}
    made = local_media.sketch_png("a red kite", 1234, 512, 512)
    assert Image.open(io.BytesIO(stored)).tobytes() == Image.open(io.BytesIO(made)).tobytes()
    assert recipe.strip_png_recipe(stored) == made


def test_video_outputs_are_stored_untouched(app, client, user, worker):
    sign_in(client, user.email)
    response = client.post("/playground/runs", headers={"HX-Request": "true"}, data={
        "model": "local/sketch-video", "prompt": "waves", "duration": "1"})
    run_id = response.text.split('id="run-', 1)[1].split('"', 1)[0]
    run = wait_for_run(app, run_id, timeout=60)
    with app.app_context():
        assert db.session.get(Run, run_id).status == "succeeded"
    with client.get(run.output_urls[0]) as download:
        assert download.data[4:8] == b"ftyp" and b"runbase" not in download.data
