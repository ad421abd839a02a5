"""Image files without metadata, for the public: PNG, JPEG and WebP copies that keep
their pixels and nothing a provider wrote beside them.

Providers write what they like into their files: Stable-Diffusion-style models put the
prompt and settings in PNG text chunks (`parameters`, `Description`, `Comment`), others
in EXIF (ImageDescription, UserComment), XMP, a JPEG comment or IPTC. A share may hide
the prompt, so a shared copy keeps only what the image needs to look the same: the
compressed image data, palette and transparency, colour profile, gamma, pixel density
and animation. The container is rewritten, never re-encoded, so the pixels are exactly
the provider's.

What we can't vouch for goes too: unknown PNG ancillary chunks and unknown WebP chunks
are ignorable by definition and could hold anything (an embedded C2PA manifest no longer
matches the file once the worker has added its recipe, so nothing of value is lost).
EXIF goes whole, Orientation included: generated images are made upright.

Bytes that don't parse as the type they were stored as raise MetadataError;
`public_copy` then falls back to `reencode`, which keeps only decoded pixels.
"""
from __future__ import annotations

import io
import logging

from PIL import Image

from .recipe import PNG_SIGNATURE, PngError, png_chunks

log = logging.getLogger(__name__)

#: Ancillary PNG chunks the picture needs (transparency, colour, density, animation).
#: Critical chunks (IHDR, PLTE, IDAT, IEND) are always kept; everything else, text
#: (tEXt, iTXt, zTXt), eXIf and tIME among it, is dropped.
PNG_KEPT = frozenset({b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCV", b"cLLI",
                      b"sBIT", b"pHYs", b"bKGD", b"hIST", b"acTL", b"fcTL", b"fdAT"})
#: The JPEG APPn segments a decoder uses, by marker and identifier: JFIF (APP0), the ICC
#: profile (APP2) and Adobe's colour-transform flag (APP14), without which CMYK and
#: YCCK images decode to the wrong colours. Every other APPn (EXIF and XMP in APP1,
#: IPTC in APP13, ...) and every comment (COM) is dropped.
JPEG_KEPT_APPS = {0xE0: b"JFIF\x00", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}
JPEG_SOI, JPEG_EOI, JPEG_SOS, JPEG_COM = 0xD8, 0xD9, 0xDA, 0xFE
#: JPEG markers that have no length field: TEM and the restart markers.
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
#: WebP chunks the picture needs: bitstreams, alpha, animation and the ICC profile.
WEBP_KEPT = frozenset({b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})
#: The chunks that hold a picture (an animation's frames hold theirs inside ANMF).
WEBP_IMAGE_DATA = frozenset({b"VP8 ", b"VP8L", b"ANMF"})
#: What an animation frame keeps after its header: its alpha and its bitstream.
WEBP_FRAME_KEPT = frozenset({b"ALPH", b"VP8 ", b"VP8L"})
#: VP8X flags announcing EXIF and XMP chunks, cleared with the chunks.
VP8X_EXIF, VP8X_XMP = 0x08, 0x04
#: What `reencode` saves each type as with Pillow, and the modes it can save as is.
PILLOW_FORMATS = {"image/png": ("PNG", ("1", "L", "LA", "I;16", "P", "RGB", "RGBA")),
                  "image/jpeg": ("JPEG", ("L", "RGB", "CMYK")),
                  "image/webp": ("WEBP", ("RGB", "RGBA"))}


class MetadataError(ValueError):
    """The bytes are not a well-formed file of the type they claim to be."""


def public_copy(data: bytes, content_type: str) -> bytes:
    """`data` without any metadata: its container rewritten when it parses as
    `content_type`, else its pixels re-encoded. Raises MetadataError when the bytes hold
    no image at all, so they are never served as they are."""
    try:
        return strip_metadata(data, content_type)
    except MetadataError as error:
        log.warning("a stored %s did not parse (%s): sharing its re-encoded pixels",
                    content_type, error)
        return reencode(data, content_type)


def strip_metadata(data: bytes, content_type: str) -> bytes:
    """The same PNG, JPEG or WebP without text, EXIF, XMP, comments or IPTC, its image
    data copied byte for byte. Raises MetadataError for another type, or for bytes that
    are not a complete file of this type."""
    if content_type == "image/png":
        return _strip_png(data)
    if content_type == "image/jpeg":
        return _strip_jpeg(data)
    if content_type == "image/webp":
        return _strip_webp(data)
    raise MetadataError(f"no metadata stripping for {content_type}")


def reencode(data: bytes, content_type: str) -> bytes:
    """The first frame of whatever image Pillow reads in `data`, saved as
    `content_type` with its pixels and colour profile only. Raises MetadataError when
    Pillow can't read it or the type is not an image type we share."""
    if content_type not in PILLOW_FORMATS:
        raise MetadataError(f"no re-encoding to {content_type}")
    image_format, modes = PILLOW_FORMATS[content_type]
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            keep = {key: image.info[key] for key in ("icc_profile", "transparency")
                    if key in image.info}
            if image.mode in modes:
                clean = image.copy()
            else:
                # The palette index of `transparency` means nothing after a conversion.
                keep.pop("transparency", None)
                clean = image.convert("RGBA" if "RGBA" in modes else "RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise MetadataError(f"not a readable image: {error}") from error
    # Pillow carries some info (e.g. a JPEG comment) into what it saves: start empty.
    clean.info = {}
    out = io.BytesIO()
    try:
        clean.save(out, format=image_format, **keep,
                   **({} if image_format == "PNG" else {"quality": 95}))
    except (OSError, ValueError) as error:
        raise MetadataError(f"the pixels could not be saved as {content_type}: {error}") from error
    # Whatever this Pillow writes by default goes the same way as the provider's.
    return strip_metadata(out.getvalue(), content_type)


# --- PNG -------------------------------------------------------------------------------------


def _strip_png(data: bytes) -> bytes:
    """The PNG's critical chunks and the ancillary ones in PNG_KEPT, in their order."""
    try:
        chunks = list(png_chunks(data))
    except PngError as error:
        raise MetadataError(str(error)) from error
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise MetadataError("a PNG must run from IHDR to IEND")
    # Bit 5 of a chunk type's first byte is clear for critical chunks (upper case).
    kept = [data[start:end] for kind, start, end in chunks
            if not kind[0] & 0x20 or kind in PNG_KEPT]
    return PNG_SIGNATURE + b"".join(kept)


# --- JPEG ------------------------------------------------------------------------------------


def _strip_jpeg(data: bytes) -> bytes:
    """The JPEG's segments minus COM and unneeded APPn, its scans copied verbatim, up to
    EOI (anything a tool appended after the image goes too)."""
    if not data.startswith(b"\xff\xd8"):
        raise MetadataError("not a JPEG file")
    kept, position = [b"\xff\xd8"], 2
    while True:
        marker, position = _jpeg_marker(data, position)
        if marker == JPEG_EOI:
            kept.append(b"\xff\xd9")
            return b"".join(kept)
        if marker in JPEG_STANDALONE:
            kept.append(bytes((0xFF, marker)))
            continue
        if marker == JPEG_SOI or position + 2 > len(data):
            raise MetadataError("a damaged JPEG segment")
        end = position + int.from_bytes(data[position:position + 2], "big")
        if end < position + 2 or end > len(data):
            raise MetadataError("a truncated JPEG segment")
        if _jpeg_keeps(marker, data[position + 2:end]):
            kept.append(bytes((0xFF, marker)) + data[position:end])
        position = end
        if marker == JPEG_SOS:
            scan_end = _scan_end(data, position)
            kept.append(data[position:scan_end])
            position = scan_end


def _jpeg_marker(data: bytes, position: int) -> tuple[int, int]:
    """The marker at `position` (after any 0xFF fill bytes) and the position after it."""
    if position >= len(data) or data[position] != 0xFF:
        raise MetadataError("a JPEG without its end of image")
    while position < len(data) and data[position] == 0xFF:
        position += 1
    if position >= len(data):
        raise MetadataError("a truncated JPEG marker")
    return data[position], position + 1


def _jpeg_keeps(marker: int, payload: bytes) -> bool:
    """Whether a segment is kept: everything but COM and the APPn a decoder ignores."""
    if marker == JPEG_COM:
        return False
    if 0xE0 <= marker <= 0xEF:
        identifier = JPEG_KEPT_APPS.get(marker)
        return identifier is not None and payload.startswith(identifier)
    return True


def _scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data from `position` ends: at the first 0xFF that starts a
    marker, not a stuffed 0xFF00 nor a restart marker (both belong to the scan)."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            raise MetadataError("a JPEG scan without an end")
        following = data[position + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return position
        position += 2


# --- WebP ------------------------------------------------------------------------------------


def _strip_webp(data: bytes) -> bytes:
    """The WebP's chunks in WEBP_KEPT, with VP8X no longer announcing EXIF or XMP."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise MetadataError("not a WebP file")
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data):
        raise MetadataError("a truncated WebP file")
    kept, has_image = [], False
    for kind, body in _riff_chunks(data, 12, riff_end):
        if kind not in WEBP_KEPT:
            continue
        if kind == b"VP8X":
            body = _vp8x_without_metadata(body)
        elif kind == b"ANMF":
            body = _frame_without_extras(body)
        has_image = has_image or kind in WEBP_IMAGE_DATA
        kept.append(_riff_chunk(kind, body))
    if not has_image:
        raise MetadataError("a WebP file without image data")
    chunks = b"".join(kept)
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WEBP" + chunks


def _riff_chunks(data: bytes, position: int, end: int):
    """(type, body) of each RIFF chunk from `position` to `end`."""
    while position < end:
        size = int.from_bytes(data[position + 4:position + 8], "little")
        if position + 8 > end or position + 8 + size > end:
            raise MetadataError("a truncated WebP chunk")
        yield data[position:position + 4], data[position + 8:position + 8 + size]
        position += 8 + size + (size & 1)  # chunks are padded to an even size


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    """One RIFF chunk: type, little-endian size, body and the padding to an even size."""
    return kind + len(body).to_bytes(4, "little") + body + b"\x00" * (len(body) & 1)


def _vp8x_without_metadata(body: bytes) -> bytes:
    """The VP8X header with its EXIF and XMP flags cleared (the chunks are gone)."""
    if len(body) < 10:
        raise MetadataError("a damaged VP8X chunk")
    return bytes((body[0] & ~(VP8X_EXIF | VP8X_XMP) & 0xFF,)) + body[1:]


def _frame_without_extras(body: bytes) -> bytes:
    """An animation frame's 16-byte header and its alpha and bitstream chunks only: the
    format lets unknown chunks follow them there too."""
    if len(body) < 16:
        raise MetadataError("a damaged ANMF chunk")
    frame = [_riff_chunk(kind, data) for kind, data in _riff_chunks(body, 16, len(body))
             if kind in WEBP_FRAME_KEPT]
    return body[:16] + b"".join(frame)
