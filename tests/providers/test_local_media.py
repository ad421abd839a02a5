"""Tests for the deterministic offline renderers in runbase_web.providers.local_media."""

import io
import json
import os
import tempfile

import imageio_ffmpeg
import pytest
from PIL import Image

from runbase_web.providers import local_media
from runbase_web.providers.local_media import (
    ASPECT_RATIOS,
    frame_size,
    sketch_mp4,
    sketch_png,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    image.load()  # forces a full decode, so truncated data fails here
    return image


# --------------------------------------------------------------------------- frame_size


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
@pytest.mark.parametrize("long_edge", [512, 640, 1024, 1025])
def test_frame_size_even_long_edge_and_ratio(ratio, long_edge):
    width, height = frame_size(ratio, long_edge)
    rw, rh = (int(p) for p in ratio.split(":"))
    assert width % 2 == 0 and height % 2 == 0
    assert max(width, height) in (long_edge, long_edge + 1, long_edge - 1)
    assert abs(width / height - rw / rh) < 0.02 * rw / rh
    assert (width >= height) == (rw >= rh)


def test_frame_size_known_values():
    assert frame_size("16:9", 640) == (640, 360)
    assert frame_size("9:16", 640) == (360, 640)
    assert frame_size("1:1", 512) == (512, 512)
    assert frame_size("21:9", 1024) == (1024, 438)


def test_frame_size_rejects_unknown_ratio():
    with pytest.raises(ValueError):
        frame_size("7:3", 512)


# --------------------------------------------------------------------------- sketch_png


def test_sketch_png_is_valid_png_of_requested_size():
    image = _open(sketch_png("a lighthouse in a storm", 1, 320, 200))
    assert image.format == "PNG"
    assert image.size == (320, 200)
    assert image.mode == "RGB"


def test_sketch_png_is_byte_identical_for_same_args():
    args = ("a lighthouse in a storm", 7, 256, 384)
    chunks = {"runbase:recipe": '{"seed": 7}'}
    assert sketch_png(*args, index=2, text_chunks=chunks) == sketch_png(*args, index=2, text_chunks=chunks)


@pytest.mark.parametrize(
    "other",
    [
        dict(prompt="a lighthouse in the sun"),
        dict(seed=8),
        dict(index=1),
    ],
)
def test_sketch_png_differs_when_prompt_seed_or_index_differ(other):
    base = dict(prompt="a lighthouse in a storm", seed=7, width=256, height=256, index=0)
    assert sketch_png(**base) != sketch_png(**{**base, **other})


def test_sketch_png_pixels_differ_not_just_metadata():
    # The shapes themselves (not only the caption) must depend on the seed.
    a = _open(sketch_png("same words", 1, 128, 128)).tobytes()
    b = _open(sketch_png("same words", 2, 128, 128)).tobytes()
    assert a != b


def test_sketch_png_text_chunks_round_trip():
    recipe = json.dumps({"model": "local/sketch", "seed": 3, "prompt": "café ☕"})
    chunks = {"runbase:recipe": recipe, "runbase:note": "plain ascii"}
    image = _open(sketch_png("tea", 3, 128, 128, text_chunks=chunks))
    assert image.text["runbase:recipe"] == recipe
    assert image.text["runbase:note"] == "plain ascii"
    assert json.loads(image.text["runbase:recipe"])["seed"] == 3


def test_sketch_png_non_latin1_chunk_round_trips_as_itxt():
    image = _open(sketch_png("tea", 3, 64, 64, text_chunks={"runbase:recipe": "猫 🐱"}))
    assert image.text["runbase:recipe"] == "猫 🐱"


def test_sketch_png_has_no_time_chunk():
    data = sketch_png("clock", 1, 64, 64)
    assert b"tIME" not in data


@pytest.mark.parametrize(
    "prompt",
    [
        "word " * 2000,
        "x" * 5000,
        "🦊🎨 émoji — <script>alert('x')</script> &amp; \"quotes\" 日本語 \u200d\ufe0f",
        "line\nbreaks\tand\r\ncontrol\x00chars",
        "",
        "   ",
    ],
)
def test_sketch_png_odd_prompts_do_not_crash(prompt):
    image = _open(sketch_png(prompt, 0, 200, 120))
    assert image.size == (200, 120)


def test_caption_wraps_and_ellipsizes_to_fit():
    font = local_media._font(16)
    lines = local_media._wrap("lorem ipsum dolor " * 100, font, 200, 2)
    assert len(lines) == 2
    assert lines[-1].endswith("…")
    assert all(font.getlength(line) <= 200 for line in lines)


def test_caption_breaks_a_single_overlong_word():
    font = local_media._font(16)
    lines = local_media._wrap("y" * 300, font, 150, 3)
    assert len(lines) == 3
    assert all(font.getlength(line) <= 150 for line in lines)


def test_caption_text_folds_what_the_font_cannot_draw():
    assert local_media._caption_text("café  ☕\nnoir") == "cafe ? noir"


# --------------------------------------------------------------------------- test_png


def test_test_png_is_small_valid_png():
    data = local_media.test_png("anything", 5)
    image = _open(data)
    assert image.size == (64, 64)
    assert data == local_media.test_png("anything", 5)
    assert data != local_media.test_png("anything", 6)


# --------------------------------------------------------------------------- sketch_mp4


@pytest.fixture(scope="module")
def clip():
    """One 2 s 320x180 clip shared by the MP4 tests (rendering is the slow part)."""
    return sketch_mp4("a paper boat drifting on a pond", 11, 320, 180, seconds=2, fps=24)


def _probe(data: bytes) -> tuple[dict, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        with open(path, "wb") as handle:
            handle.write(data)
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        # Close while ffmpeg is still running: read_frames only closes its
        # pipes in that case (reading to EOF leaks them -> ResourceWarning).
        reader.close()
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(path)
    return {**meta, "decoded_seconds": seconds}, frames


def test_sketch_mp4_is_an_mp4_with_h264(clip):
    assert clip[4:8] == b"ftyp"
    assert b"avc1" in clip
    # faststart: the moov index precedes the media data, so browsers can
    # start playing before the whole file has arrived.
    assert clip.index(b"moov") < clip.index(b"mdat")


def test_sketch_mp4_decodes_to_expected_frames(clip):
    meta, frames = _probe(clip)
    assert meta["size"] == (320, 180)
    assert meta["fps"] == pytest.approx(24)
    assert meta["codec"] == "h264"
    assert meta["pix_fmt"].startswith("yuv420p")
    assert abs(frames - 48) <= 1
    assert meta["duration"] == pytest.approx(2.0, abs=1 / 24 + 1e-6)
    assert meta["decoded_seconds"] == pytest.approx(2.0, abs=1 / 24 + 1e-6)


def test_sketch_mp4_is_byte_identical_when_rendered_twice(clip):
    assert sketch_mp4("a paper boat drifting on a pond", 11, 320, 180, seconds=2, fps=24) == clip


def test_sketch_mp4_differs_for_another_seed(clip):
    assert sketch_mp4("a paper boat drifting on a pond", 12, 320, 180, seconds=2, fps=24) != clip


def test_sketch_mp4_portrait_one_second():
    width, height = frame_size("9:16", 256)
    meta, frames = _probe(sketch_mp4("tall", 1, width, height, seconds=1, fps=12))
    assert meta["size"] == (width, height)
    assert abs(frames - 12) <= 1


def test_sketch_mp4_rejects_odd_dimensions():
    with pytest.raises(ValueError):
        sketch_mp4("odd", 1, 321, 180, seconds=1)
