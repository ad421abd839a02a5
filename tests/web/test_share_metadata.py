"""Shared copies carry no metadata: whatever a provider wrote into a PNG, JPEG or WebP
(text chunks, EXIF, XMP, comments, IPTC) is gone from /s/<token>/outputs/<n>, with the
pixels untouched; PNGs get back only the share recipe. Real files, the real view."""
from __future__ import annotations

import io
import re
import struct

import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from runbase_web import media_metadata, recipe, state
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.services import files
from tests.support.png_recipe import read_png_recipe
from tests.conftest import wait_for_run
from tests.web import HTMX

#: What a Stable-Diffusion-style provider writes into its files: the prompt and settings.
PROMPT = "an orchid greenhouse at dusk, Negative prompt: blurry"
SECRET = PROMPT.encode()
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
       b'22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
       b"<dc:description>" + SECRET + b"</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>")


@pytest.fixture
def app_config():
    return {"PUBLIC_URL": "https://runbase.example"}


# --- files as providers make them -----------------------------------------------------------


def picture(mode="RGB", size=(24, 16)) -> Image.Image:
    """A small image with distinct pixels, so a re-encode or a shift would show."""
    image = Image.new("RGB", size)
    image.putdata([(x * 10 % 256, y * 15 % 256, (x * y) % 256) for y in range(size[1])
                   for x in range(size[0])])
    return image.convert(mode)


def prompt_exif() -> Image.Exif:
    """EXIF with the prompt as ImageDescription and as UserComment (in the Exif IFD)."""
    exif = Image.Exif()
    exif[0x010E] = PROMPT  # ImageDescription
    exif[0x0131] = "StableDiffusion"  # Software
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + SECRET  # UserComment
    return exif


def chunk_kinds(png: bytes) -> list[bytes]:
    return [kind for kind, _start, _end in recipe.png_chunks(png)]


def sd_png(**save) -> bytes:
    """A PNG with the prompt in tEXt `parameters`, iTXt `Description`, zTXt `Comment`, an
    eXIf chunk and an XMP iTXt, plus a tIME chunk and a private chunk."""
    info = PngInfo()
    info.add_text("parameters", PROMPT)
    info.add_itxt("Description", PROMPT)
    info.add_text("Comment", PROMPT, zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 6, 7, 8, 9))
    info.add(b"prVt", b"private " + SECRET)
    out = io.BytesIO()
    picture(save.pop("mode", "RGB")).save(out, format="PNG", pnginfo=info, exif=prompt_exif(),
                                          **save)
    return out.getvalue()


def app13_iptc(text: bytes) -> bytes:
    """An APP13 Photoshop segment holding an IPTC record with a 2:120 caption."""
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def sd_jpeg(mode="RGB") -> bytes:
    """A JPEG with EXIF (ImageDescription, UserComment), an XMP APP1 packet, a COM
    segment and an APP13 IPTC caption, all holding the prompt; with an ICC profile."""
    out = io.BytesIO()
    picture(mode).save(out, format="JPEG", quality=90, exif=prompt_exif(), xmp=XMP,
                       comment=PROMPT, icc_profile=SRGB if mode == "RGB" else None)
    data = out.getvalue()
    return data[:2] + app13_iptc(SECRET) + data[2:]


def sd_webp(**save) -> bytes:
    """A WebP with the prompt in its EXIF and XMP chunks, with an ICC profile."""
    out = io.BytesIO()
    picture(save.pop("mode", "RGB")).save(out, format="WEBP", exif=prompt_exif(), xmp=XMP,
                                          icc_profile=SRGB, **save)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_same_pixels(served: bytes, original: bytes) -> None:
    a, b = decoded(served), decoded(original)
    assert (a.format, a.mode, a.size) == (b.format, b.mode, b.size)
    assert a.tobytes() == b.tobytes()


# --- a shared run with these outputs ---------------------------------------------------------


@pytest.fixture
def run_id(app, signed_in, worker):
    """A succeeded run of alice's whose prompt is PROMPT."""
    response = signed_in.post("/playground/runs", headers=HTMX,
                              data={"model": "local/test", "prompt": PROMPT, "seed": "3"})
    assert response.status_code == 201, response.text
    run_id = re.search(r'id="run-(run_[a-z0-9]+)"', response.text).group(1)
    assert wait_for_run(app, run_id).status == "succeeded"
    return run_id


def store_outputs(app, run_id: str, outputs: list[tuple[bytes, str]]) -> None:
    """Make these the run's outputs, stored as the worker stores a provider's files (PNGs
    with the run's full recipe)."""
    with app.app_context():
        run = db.session.get(Run, run_id)
        urls = []
        for data, content_type in outputs:
            if content_type == "image/png":
                try:
                    full = recipe.recipe_for_run(run, "https://runbase.example")
                    data = recipe.embed_png_recipe(data, full)
                except ValueError:
                    pass  # not a PNG whose chunks can be walked: the worker stores it as is
            row = files.store_output(db.session, state.storage(app), user_id=run.user_id,
                                     run_id=run_id, data=data, content_type=content_type)
            urls.append(files.url_path(row))
        run.output_urls = urls
        db.session.commit()


def shared_files(app, signed_in, run_id, hide_prompt: bool) -> list:
    """Share the run and fetch each of its outputs as a stranger would."""
    response = signed_in.post(f"/runs/{run_id}/share", headers=HTMX,
                              data={"hide_prompt": "1"} if hide_prompt else {})
    assert response.status_code == 200
    with app.app_context():
        run = db.session.get(Run, run_id)
        token, count = run.share_token, len(run.output_urls)
    visitor = app.test_client()
    return [visitor.get(f"/s/{token}/outputs/{index}") for index in range(count)]


HIDE = pytest.mark.parametrize("hide_prompt", [True, False], ids=["hidden", "shown"])


@HIDE
def test_a_shared_png_keeps_only_its_pixels_and_the_share_recipe(app, signed_in, run_id, hide_prompt):
    original = sd_png(dpi=(72, 72), icc_profile=SRGB)
    assert SECRET in original and "parameters" in decoded(original).text
    store_outputs(app, run_id, [(original, "image/png")])
    [response] = shared_files(app, signed_in, run_id, hide_prompt)
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "public, max-age=60"
    served = response.data

    # Only the share recipe remains: no run id, and the prompt only if it is shown.
    image = decoded(served)
    assert set(image.text) == {"runbase"} and "exif" not in image.info
    shared = read_png_recipe(served)
    assert shared["run"].startswith("https://runbase.example/s/") and "runId" not in shared
    assert run_id.encode() not in served
    assert ("prompt" in shared["input"]) is not hide_prompt
    assert SECRET not in recipe.strip_png_recipe(served)
    if hide_prompt:
        assert SECRET not in served
    kinds = chunk_kinds(served)
    assert not {b"tEXt", b"zTXt", b"eXIf", b"tIME", b"prVt"} & set(kinds)
    assert kinds.count(b"iTXt") == 1

    # The image itself is untouched: same pixels, same colour profile and density.
    assert_same_pixels(served, original)
    assert image.info["icc_profile"] == SRGB
    assert image.info["dpi"] == decoded(original).info["dpi"] == pytest.approx((72, 72), rel=1e-3)
    assert {b"IHDR", b"iCCP", b"pHYs", b"IDAT", b"IEND"} <= set(kinds)


@HIDE
def test_a_shared_jpeg_and_webp_carry_no_metadata(app, signed_in, run_id, hide_prompt):
    originals = [(sd_jpeg(), "image/jpeg"), (sd_webp(), "image/webp"),
                 (sd_webp(lossless=True, mode="RGBA"), "image/webp")]
    for data, _type in originals:
        assert SECRET in data
    store_outputs(app, run_id, originals)
    responses = shared_files(app, signed_in, run_id, hide_prompt)
    for response, (original, content_type) in zip(responses, originals):
        assert response.status_code == 200 and response.mimetype == content_type
        assert response.headers["Cache-Control"] == "public, max-age=60"
        served = response.data
        assert SECRET not in served and b"StableDiffusion" not in served
        image = decoded(served)
        assert not {"exif", "xmp", "comment", "photoshop"} & set(image.info)
        assert not image.getexif()
        assert image.info["icc_profile"] == SRGB  # colour is not metadata
        assert_same_pixels(served, original)


def test_a_cmyk_jpeg_keeps_its_adobe_segment_and_colours(app, signed_in, run_id):
    original = sd_jpeg("CMYK")
    assert b"Adobe" in original
    store_outputs(app, run_id, [(original, "image/jpeg")])
    [response] = shared_files(app, signed_in, run_id, hide_prompt=True)
    assert SECRET not in response.data and b"\xff\xee" in response.data
    assert_same_pixels(response.data, original)


def test_a_file_that_is_not_what_it_claims_is_re_encoded_without_metadata(app, signed_in, run_id):
    # A JPEG stored as image/png (a provider's wrong label) is not served raw.
    jpeg = sd_jpeg()
    store_outputs(app, run_id, [(jpeg, "image/png"), (sd_png(), "image/webp")])
    as_png, as_webp = shared_files(app, signed_in, run_id, hide_prompt=True)
    for response, original, kind in ((as_png, jpeg, "PNG"), (as_webp, sd_png(), "WEBP")):
        assert response.status_code == 200 and SECRET not in response.data
        image = decoded(response.data)
        assert image.format == kind and not {"exif", "xmp", "comment"} & set(image.info)
        assert image.size == decoded(original).size
    assert read_png_recipe(as_png.data)["run"].startswith("https://runbase.example/s/")
    assert decoded(as_png.data).tobytes() == decoded(jpeg).convert("RGB").tobytes()


@pytest.mark.parametrize("data", [b"not an image " + SECRET, b"\x89PNG\r\n\x1a\n" + SECRET],
                         ids=["garbage", "broken-png"])
def test_a_file_that_is_no_image_at_all_is_not_served(app, signed_in, run_id, data):
    store_outputs(app, run_id, [(data, "image/jpeg")])
    [response] = shared_files(app, signed_in, run_id, hide_prompt=True)
    assert response.status_code == 404 and SECRET not in response.data


# --- the rewriting itself --------------------------------------------------------------------


def test_png_image_chunks_survive_in_their_order():
    # A palette image with transparency, gamma and chromaticities; and an APNG.
    info = PngInfo()
    info.add(b"gAMA", struct.pack(">I", 45455))
    info.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))
    info.add_text("parameters", PROMPT)
    palette, animated = io.BytesIO(), io.BytesIO()
    picture("P").save(palette, format="PNG", pnginfo=info, transparency=3)
    picture().save(animated, format="PNG", save_all=True, append_images=[picture().rotate(90)],
                   duration=100, loop=0, pnginfo=info)
    for original, needed in ((palette.getvalue(), {b"PLTE", b"tRNS", b"gAMA", b"cHRM"}),
                             (animated.getvalue(), {b"acTL", b"fcTL", b"fdAT"})):
        clean = media_metadata.strip_metadata(original, "image/png")
        assert chunk_kinds(clean) == [kind for kind in chunk_kinds(original) if kind != b"tEXt"]
        assert needed <= set(chunk_kinds(clean)) and SECRET not in clean
        assert_same_pixels(clean, original)
    # The animation's second frame too (`clean` is the APNG's, checked last).
    frames = [decoded(data) for data in (animated.getvalue(), clean)]
    for image in frames:
        image.seek(1)
    assert frames[0].tobytes() == frames[1].tobytes()


def test_jpeg_scan_data_is_copied_byte_for_byte():
    original = sd_jpeg()
    clean = media_metadata.strip_metadata(original, "image/jpeg")
    scan = original.index(b"\xff\xda")
    assert clean.endswith(original[scan:]) and clean.startswith(b"\xff\xd8\xff\xe0")  # JFIF first
    # Data after the end of the image (some tools append their own) goes too.
    assert media_metadata.strip_metadata(original + b"trailer " + SECRET, "image/jpeg") == clean


def test_webp_flags_say_what_is_left():
    clean = media_metadata.strip_metadata(sd_webp(), "image/webp")
    kinds, position = [], 12
    while position < len(clean):
        kind, size = struct.unpack("<4sI", clean[position:position + 8])
        kinds.append(kind)
        if kind == b"VP8X":
            flags = clean[position + 8]
        position += 8 + size + (size & 1)
    assert kinds == [b"VP8X", b"ICCP", b"VP8 "]
    assert flags & 0x20 and not flags & (0x08 | 0x04)  # ICC yes; EXIF and XMP no
    assert struct.unpack("<I", clean[4:8])[0] == len(clean) - 8


def test_an_animated_webp_keeps_its_frames():
    out = io.BytesIO()
    picture("RGBA").save(out, format="WEBP", save_all=True, append_images=[picture("RGBA").rotate(180)],
                         duration=100, loop=0, exif=prompt_exif(), xmp=XMP)
    original = out.getvalue()
    clean = media_metadata.strip_metadata(original, "image/webp")
    assert SECRET not in clean and b"ANMF" in clean
    frames = [decoded(data) for data in (original, clean)]
    assert frames[1].n_frames == 2
    for index in range(2):
        for image in frames:
            image.seek(index)
        assert frames[0].tobytes() == frames[1].tobytes()


@pytest.mark.parametrize("make, content_type", [
    (lambda: b"", "image/png"), (lambda: recipe.PNG_SIGNATURE, "image/png"),
    (lambda: sd_png()[:-12], "image/png"), (lambda: b"\xff\xd8\xff\xe0\x00", "image/jpeg"),
    (lambda: sd_jpeg()[:-2], "image/jpeg"), (lambda: b"RIFF\x04\x00\x00\x00WEBP", "image/webp"),
    (lambda: sd_webp()[:40], "image/webp"), (sd_png, "image/gif"),
], ids=["empty", "png-signature-only", "png-without-iend", "jpeg-cut-in-a-segment",
        "jpeg-without-eoi", "webp-without-image", "webp-cut-short", "gif"])
def test_what_does_not_parse_is_refused(make, content_type):
    with pytest.raises(media_metadata.MetadataError):
        media_metadata.strip_metadata(make(), content_type)
