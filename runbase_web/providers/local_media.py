"""Deterministic offline renderers behind the built-in ``local/*`` models.

Everything here is a pure function of its arguments: the same prompt, seed and
size give byte-identical PNG / MP4 bytes, so tests, benchmarks and the
Playground can rely on outputs (and their hashes) without any network or key.
No Flask, no database.

Randomness comes from SHA-256 (``_Dice``), never from ``hash()`` (salted per
process) nor ``random`` (whose derived methods have changed between Python
versions), so results survive restarts and interpreter upgrades.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import math
import os
import re
import struct
import tempfile
import unicodedata
from dataclasses import dataclass

import imageio_ffmpeg
from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

ASPECT_RATIOS: tuple[str, ...] = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)

# Glyphs present in Pillow's embedded Aileron subset; anything else would be
# drawn as a .notdef box, so captions fold it to ASCII or "?" instead.
_FONT_CHARS = frozenset(map(chr, range(0x20, 0x7F))) | frozenset("©«°±´·»‘’“”…‹›⁄™")
_ELLIPSIS = "…"
_SUPERSAMPLE = 2  # still images are drawn at 2x and reduced: cheap anti-aliasing
_MIN_SHAPES, _MAX_SHAPES = 6, 12


# --------------------------------------------------------------------------- sizes


def frame_size(aspect_ratio: str, long_edge: int) -> tuple[int, int]:
    """Return ``(width, height)`` for ``aspect_ratio`` with the given long edge.

    Both sides are rounded to even numbers because H.264 with yuv420p chroma
    subsampling rejects odd dimensions. Raises ``ValueError`` for a ratio not
    in ``ASPECT_RATIOS`` or a long edge below 2.
    """
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unsupported aspect ratio {aspect_ratio!r}")
    if long_edge < 2:
        raise ValueError(f"long_edge must be >= 2, got {long_edge}")
    rw, rh = (int(part) for part in aspect_ratio.split(":"))
    if rw >= rh:
        return _even(long_edge), _even(long_edge * rh / rw)
    return _even(long_edge * rw / rh), _even(long_edge)


def _even(value: float) -> int:
    # Round half up (not banker's rounding) so sizes are easy to predict.
    return max(2, int(value / 2 + 0.5) * 2)


# --------------------------------------------------------------------------- dice


class _Dice:
    """A stable stream of floats in [0, 1) keyed by arbitrary values."""

    def __init__(self, *key: object) -> None:
        # The unit separator keeps ("ab", "c") and ("a", "bc") apart.
        self._key = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
        self._counter = 0

    def unit(self) -> float:
        block = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
        self._counter += 1
        return struct.unpack(">Q", block[:8])[0] / 2**64

    def between(self, low: float, high: float) -> float:
        return low + (high - low) * self.unit()

    def choice(self, options: tuple):
        return options[int(self.unit() * len(options))]


def _words(prompt: str) -> list[str]:
    # Case-folded so "Cat" and "cat" pick the same colours.
    return re.findall(r"\w+", prompt.casefold())


def _hsv(hue: float, sat: float, val: float, alpha: int | None = None) -> tuple[int, ...]:
    rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue % 1.0, sat, val))
    return rgb if alpha is None else (*rgb, alpha)


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class _Shape:
    """One shape; geometry is in fractions of the frame so any size works."""

    kind: str
    cx: float
    cy: float
    size: float  # fraction of the short edge
    angle: float  # radians
    fill: tuple[int, int, int, int]
    drift_x: float  # orbit amplitude, fraction of the frame
    drift_y: float
    omega: float  # orbit speed, radians per second
    phase: float
    spin: float  # radians per second

    def at(self, t: float) -> tuple[float, float, float]:
        """Centre (fractions) and angle at time ``t`` seconds."""
        a = self.omega * t + self.phase
        cx = self.cx + self.drift_x * (math.sin(a) - math.sin(self.phase))
        cy = self.cy + self.drift_y * (math.cos(a * 0.8) - math.cos(self.phase * 0.8))
        return cx, cy, self.angle + self.spin * t


@dataclass(frozen=True)
class _Scene:
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    glow: tuple[int, int, int]
    glow_at: tuple[float, float]
    shapes: tuple[_Shape, ...]


def _scene(prompt: str, seed: int, index: int) -> _Scene:
    words = _words(prompt) or ["runbase"]
    dice = _Dice("scene", " ".join(words), seed, index)
    hue = dice.unit()
    count = max(_MIN_SHAPES, min(len(words), _MAX_SHAPES))
    shapes = tuple(
        _shape((words[slot % len(words)], slot // len(words)), hue, (prompt, seed, index, slot))
        for slot in range(count)
    )
    return _Scene(
        top=_hsv(hue, 0.55, 0.22),
        bottom=_hsv(hue + dice.between(0.08, 0.25), 0.50, 0.78),
        glow=_hsv(hue + 0.5, 0.35, 1.0),
        glow_at=(dice.between(0.15, 0.85), dice.between(0.1, 0.6)),
        shapes=shapes,
    )


def _shape(look_key: tuple, scene_hue: float, placement_key: tuple) -> _Shape:
    # The word (and how many times it has been reused to pad short prompts)
    # alone picks kind and hue offset, so a word keeps its "look" across seeds;
    # placement and motion also depend on the seed and slot.
    look = _Dice("word", *look_key)
    kind = look.choice(("circle", "ring", "rect", "line"))
    # Mostly analogous hues with the occasional complementary accent.
    hue = scene_hue + look.choice((0.0, 0.07, -0.07, 0.14, -0.14, 0.5)) + look.between(-0.03, 0.03)
    colour = _hsv(hue, look.between(0.45, 0.9), look.between(0.7, 1.0))
    place = _Dice("shape", *placement_key)
    return _Shape(
        kind=kind,
        cx=place.between(0.08, 0.92),
        cy=place.between(0.08, 0.75),
        size=place.between(0.10, 0.38),
        angle=place.between(0, math.pi),
        fill=(*colour, round(place.between(120, 210))),
        drift_x=place.between(0.03, 0.12),
        drift_y=place.between(0.02, 0.08),
        omega=place.between(0.6, 1.8) * place.choice((-1, 1)),
        phase=place.between(0, 2 * math.pi),
        spin=place.between(-0.6, 0.6),
    )


# --------------------------------------------------------------------------- drawing


def _background(scene: _Scene, width: int, height: int) -> Image.Image:
    # Vertical two-colour gradient plus a soft radial glow; built from Pillow's
    # gradient primitives so there is no per-pixel Python loop.
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    image = Image.composite(Image.new("RGB", (width, height), scene.bottom),
                            Image.new("RGB", (width, height), scene.top), ramp)
    radius = max(width, height)
    glow = Image.radial_gradient("L").resize((radius, radius), Image.Resampling.BILINEAR)
    glow = glow.point(_GLOW_CURVE)
    x = round(scene.glow_at[0] * width - radius / 2)
    y = round(scene.glow_at[1] * height - radius / 2)
    image.paste(scene.glow, (x, y, x + radius, y + radius), glow)
    return image


# radial_gradient() is 0 at the centre and 181 at the middle of each edge
# (255 only in the corners); fading to 0 by 180 hides the pasted square's edges.
_GLOW_CURVE = [round(100 * max(0.0, 1 - v / 180) ** 2) for v in range(256)]


def _draw_shapes(image: Image.Image, shapes: tuple[_Shape, ...], t: float) -> None:
    # "RGBA" draw mode blends each translucent fill into the RGB image in place,
    # which is far cheaper than compositing a separate layer per frame.
    draw = ImageDraw.Draw(image, "RGBA")
    width, height = image.size
    short = min(width, height)
    for shape in shapes:
        fx, fy, angle = shape.at(t)
        _draw_shape(draw, shape, fx * width, fy * height, shape.size * short / 2, angle)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: _Shape, cx: float, cy: float,
                r: float, angle: float) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    stroke = max(1, round(r * 0.18))
    if shape.kind == "circle":
        draw.ellipse(box, fill=shape.fill)
    elif shape.kind == "ring":
        draw.ellipse(box, outline=shape.fill, width=stroke)
    elif shape.kind == "rect":
        draw.polygon(_rotated_rect(cx, cy, r, r * 0.62, angle), fill=shape.fill)
    else:
        dx, dy = math.cos(angle) * r * 1.4, math.sin(angle) * r * 1.4
        draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=shape.fill, width=stroke)


def _rotated_rect(cx: float, cy: float, half_w: float, half_h: float,
                  angle: float) -> list[tuple[float, float]]:
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    corners = ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h))
    return [(cx + x * cos_a - y * sin_a, cy + x * sin_a + y * cos_a) for x, y in corners]


# --------------------------------------------------------------------------- caption


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # The embedded font needs no system fonts and uses the basic layout engine,
    # so text renders identically whether or not libraqm is installed.
    return ImageFont.load_default(size=size)


def _caption_text(prompt: str) -> str:
    # Fold accents (é -> e), drop marks / control / format characters, then
    # replace what the font can't draw (emoji, CJK, ...) with "?".
    decomposed = unicodedata.normalize("NFKD", prompt)
    kept = (ch for ch in decomposed if unicodedata.category(ch)[0] not in "MC" or ch.isspace())
    text = " ".join("".join(kept).split())
    return "".join(ch if ch in _FONT_CHARS else "?" for ch in text)


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; the last line ends in an ellipsis if text was dropped."""
    # Even the narrowest glyph is wider than 0.2 em, so this bounds the work
    # for enormous prompts without ever cutting text that could be shown.
    budget = max_lines * int(max_width / (font.size * 0.2)) + 1
    lines, current = [], ""
    for word in text[:budget].split(" "):
        for piece in _split_word(word, font, max_width):
            candidate = f"{current} {piece}" if current else piece
            if current and font.getlength(candidate) > max_width:
                lines.append(current)
                candidate = piece
            current = candidate
    lines.append(current)
    if len(lines) > max_lines or len(text) > budget:
        lines = lines[:max_lines]
        lines[-1] = _ellipsize(lines[-1], font, max_width)
    return lines


def _split_word(word: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    # A single word wider than the band (a URL, "aaaa...") is broken by characters.
    pieces, current = [], ""
    for ch in word:
        if current and font.getlength(current + ch) > max_width:
            pieces.append(current)
            current = ""
        current += ch
    return pieces + [current]


def _ellipsize(line: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    while line and font.getlength(line.rstrip() + _ELLIPSIS) > max_width:
        line = line[:-1]
    return line.rstrip() + _ELLIPSIS


def _caption_band(prompt: str, width: int, height: int) -> Image.Image | None:
    """An RGBA strip (translucent dark band + white text) to paste at the bottom."""
    text = _caption_text(prompt)
    if not text:
        return None
    font = _font(max(9, round(min(width, height) * 0.045)))
    pad = max(4, font.size // 2)
    lines = _wrap(text, font, width - 2 * pad, 3 if height > width else 2)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    band = Image.new("RGBA", (width, line_height * len(lines) + 2 * pad), (10, 12, 20, 150))
    draw = ImageDraw.Draw(band)
    for row, line in enumerate(lines):
        draw.text((pad, pad + row * line_height), line, font=font, fill=(255, 255, 255, 255))
    return band


def _apply_caption(image: Image.Image, band: Image.Image | None) -> None:
    if band is not None:
        # The band's alpha doubles as the paste mask, blending it over the frame.
        image.paste(band, (0, image.height - band.height), band)


# --------------------------------------------------------------------------- PNG


def sketch_png(prompt: str, seed: int, width: int, height: int, index: int = 0,
               text_chunks: dict[str, str] | None = None,
               reference: Image.Image | None = None) -> bytes:
    """Render the ``local/sketch`` image: gradient, prompt-derived shapes, caption.

    With a ``reference`` image, its colours and rough layout replace the gradient.

    Colours and positions derive from the prompt words, ``seed`` and ``index``
    (``index`` distinguishes images of one ``num_images`` request).
    ``text_chunks`` become PNG tEXt chunks (iTXt when not Latin-1), readable
    back via ``Image.open(...).text``. Output is byte-identical for identical
    arguments: the PNG carries no timestamps.
    """
    scene = _scene(prompt, seed, index)
    if reference is None:
        big = _background(scene, width * _SUPERSAMPLE, height * _SUPERSAMPLE)
    else:
        big = _reference_background(reference, width * _SUPERSAMPLE, height * _SUPERSAMPLE)
    _draw_shapes(big, scene.shapes, t=0.0)
    image = big.reduce(_SUPERSAMPLE)
    _apply_caption(image, _caption_band(prompt, width, height))
    return _png_bytes(image, text_chunks)


#: Cells across the short edge of a reference's rough layout, and the colours it keeps.
_REFERENCE_CELLS = 12
_REFERENCE_COLOURS = 6


def _reference_background(reference: Image.Image, width: int, height: int) -> Image.Image:
    """A background from a reference image: its rough layout (cropped to the frame, shrunk
    to a few cells and smoothed back up) in its own few main colours."""
    framed = ImageOps.fit(reference.convert("RGB"), (width, height), Image.Resampling.BILINEAR)
    scale = _REFERENCE_CELLS / min(width, height)
    cells = framed.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                          Image.Resampling.BOX)
    palette = cells.quantize(_REFERENCE_COLOURS, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE).convert("RGB")
    return palette.resize((width, height), Image.Resampling.BICUBIC)


def test_png(prompt: str, seed: int) -> bytes:
    """Render the small deterministic 64x64 PNG of the ``local/test`` model.

    Same scene recipe as ``sketch_png`` but no caption (unreadable at 64 px).
    """
    scene = _scene(prompt, seed, 0)
    big = _background(scene, 64 * _SUPERSAMPLE, 64 * _SUPERSAMPLE)
    _draw_shapes(big, scene.shapes, t=0.0)
    return _png_bytes(big.reduce(_SUPERSAMPLE), None)


# Pytest would otherwise collect test_png as a test when a test module imports it.
test_png.__test__ = False  # type: ignore[attr-defined]


def _png_bytes(image: Image.Image, text_chunks: dict[str, str] | None) -> bytes:
    info = PngInfo()
    for key, value in (text_chunks or {}).items():
        # add_text falls back to iTXt (UTF-8) for values Latin-1 can't hold.
        info.add_text(key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    return out.getvalue()


# --------------------------------------------------------------------------- MP4

# x264 settings chosen for browser playback (High profile, yuv420p, moov atom
# first) and for reproducible bytes: one encoder thread (x264's threaded
# decisions can vary run to run), bitexact muxing (no "Lavf..." encoder tag)
# and no copied metadata (no creation time).
_X264_OUTPUT_PARAMS = [
    "-preset", "veryfast",
    "-crf", "23",
    "-profile:v", "high",
    "-threads", "1",
    "-movflags", "+faststart",
    "-fflags", "+bitexact",
    "-flags:v", "+bitexact",
    "-map_metadata", "-1",
]


def sketch_mp4(prompt: str, seed: int, width: int, height: int, seconds: int,
               fps: int = 24) -> bytes:
    """Render the ``local/sketch-video`` clip: an H.264 MP4 that plays in browsers.

    Shapes from the prompt and seed drift and spin smoothly over ``seconds``
    at ``fps``; the prompt stays captioned at the bottom. ``width`` and
    ``height`` must be even (use ``frame_size``). Byte-identical output for
    identical arguments.
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs even dimensions, got {width}x{height}")
    if seconds < 1 or fps < 1:
        raise ValueError("seconds and fps must be >= 1")
    frames = _video_frames(prompt, seed, width, height, seconds * fps, fps)
    with tempfile.TemporaryDirectory(prefix="runbase-mp4-") as tmp:
        path = os.path.join(tmp, "clip.mp4")
        _encode_h264(path, frames, width, height, fps)
        with open(path, "rb") as handle:
            data = handle.read()
    if not data:
        raise RuntimeError("ffmpeg produced no output")
    return data


def _video_frames(prompt: str, seed: int, width: int, height: int, count: int, fps: int):
    """Yield raw rgb24 frames; background and caption are rendered only once."""
    scene = _scene(prompt, seed, 0)
    background = _background(scene, width, height)
    band = _caption_band(prompt, width, height)
    for number in range(count):
        frame = background.copy()
        _draw_shapes(frame, scene.shapes, t=number / fps)
        _apply_caption(frame, band)
        yield frame.tobytes()


def _encode_h264(path: str, frames, width: int, height: int, fps: int) -> None:
    writer = imageio_ffmpeg.write_frames(
        path, (width, height), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps,
        quality=None, codec="libx264", macro_block_size=2,  # even dims suffice
        ffmpeg_log_level="error", output_params=list(_X264_OUTPUT_PARAMS),
    )
    writer.send(None)  # prime the generator, as imageio_ffmpeg requires
    try:
        for frame in frames:
            writer.send(frame)
    finally:
        writer.close()  # closes stdin and waits for ffmpeg to finish the file
