"""Media helpers every adapter shares: what a file is (by its magic bytes), and reference
images fetched, checked and, where the provider would refuse their type, converted to PNG.

Adapters that send reference images as bytes (OpenAI, Gemini and Veo, Ark, Kling, MiniMax)
get them here: this server's own files (uploads, outputs) straight from storage, any other
URL downloaded through the guarded fetcher. Each provider accepts only some image types
and answers 400 to the others after a call we may already be billed for, so every image is
checked before any provider call: every image must decode (HEIC/HEIF, which Pillow cannot
read, only go where they are accepted as they are), a type the provider takes goes as it is,
a still image of another type Pillow reads (GIF, BMP, TIFF, ...) is converted to PNG, and
anything else fails the run as `invalid_input` (final, so it is refunded and never retried).
"""
from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Callable

from PIL import Image, UnidentifiedImageError

from ..net import FetchError
from .base import ProviderError

#: The image types every bytes-forwarding provider takes.
WEB_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
#: ISO base media `ftyp` brands of HEIC and HEIF stills (Gemini takes both).
HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
#: Types passed on unread where accepted: Pillow has no decoder for them.
UNREADABLE_TYPES = frozenset({"image/heic", "image/heif"})
#: Leading bytes of the only output types a run may store (files.EXTENSIONS).
OUTPUT_MAGIC = ((0, b"\x89PNG\r\n\x1a\n", "image/png"), (0, b"\xff\xd8\xff", "image/jpeg"),
                (4, b"ftyp", "video/mp4"), (0, b"\x1a\x45\xdf\xa3", "video/webm"))


def sniff_image_type(data: bytes) -> str | None:
    """The image media type from the file's magic bytes, or None if it is no type we name."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:8] == b"ftyp" and data[8:12] in HEIC_BRANDS:
        return "image/heic"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "image/heif"
    return None


def sniff_output_type(data: bytes) -> str | None:
    """The storable output type the bytes really are (PNG, JPEG, WebP, MP4, WebM), or None."""
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    for offset, magic, media_type in OUTPUT_MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return media_type
    return None


def base64_text(data: bytes) -> str:
    """The bytes as standard base64 text, the way JSON APIs take inline images."""
    return base64.b64encode(data).decode()


def data_uri(data: bytes, media_type: str) -> str:
    """The bytes as a `data:<type>;base64,…` URI (Ark and MiniMax take images this way)."""
    return f"data:{media_type};base64,{base64_text(data)}"


def decode_base64(text: object, message: str) -> bytes:
    """The bytes of base64 `text` from a provider's answer (b"" when it is no text at all);
    text that is not valid base64 is `provider_bad_response` with `message`."""
    try:
        return base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        raise ProviderError(message, code="provider_bad_response") from None


def fetch_reference_images(fetcher, urls: list[str], *, max_bytes: int, timeout: float,
                           accepted: frozenset[str] = WEB_IMAGE_TYPES,
                           read_own: Callable[[str], bytes | None] | None = None
                           ) -> list[tuple[bytes, str]]:
    """Reference images as (bytes, media type), each of a type in `accepted` (converted to
    PNG when it was another readable still image).

    `read_own` reads this server's own files (uploads and outputs) straight from storage:
    it answers their bytes, or None for a URL that is not ours. Only the others are
    downloaded, through the guarded fetcher, which rightly refuses this server's own
    (often loopback or private) address.

    A URL we may not or cannot fetch, or a file that is no readable image, is the user's
    input problem (`invalid_input`); transient failures (timeouts, 5xx) stay retryable.
    """
    images = []
    for index, url in enumerate(urls, start=1):
        data = own_file(read_own, url, index)
        if data is None:
            data = _download(fetcher, url, index, max_bytes=max_bytes, timeout=timeout)
        elif len(data) > max_bytes:
            raise ProviderError(f"Reference image {index} is larger than {max_bytes} bytes.",
                                code="invalid_input")
        images.append(accepted_image(data, index, accepted=accepted, max_bytes=max_bytes))
    return images


def own_file(read_own: Callable[[str], bytes | None] | None, url: str,
             index: int) -> bytes | None:
    """Reference image `index` from this server's storage, or None when it is not ours."""
    if read_own is None:
        return None
    try:
        return read_own(url)
    except FileNotFoundError:
        raise ProviderError(f"Reference image {index} is no longer stored on this server.",
                            code="invalid_input") from None


def _download(fetcher, url: str, index: int, *, max_bytes: int, timeout: float) -> bytes:
    """Reference image `index` downloaded through the guarded fetcher."""
    if fetcher is None:
        raise ProviderError("Reference images cannot be downloaded: no fetcher is configured.",
                            code="provider_error")
    try:
        return fetcher.get(url, max_bytes=max_bytes, timeout=timeout).content
    except FetchError as error:
        raise ProviderError(f"Reference image {index} could not be downloaded: {error.message}",
                            code="invalid_input", retryable=error.retryable) from None


def accepted_image(data: bytes, index: int, *, accepted: frozenset[str],
                   max_bytes: int) -> tuple[bytes, str]:
    """(bytes, media type) of reference image `index` in a type the provider takes: as it is
    when it already is one (and decodes), else converted to PNG; a final `invalid_input`
    when it is no readable still image."""
    media_type = sniff_image_type(data)
    if media_type in accepted and media_type in UNREADABLE_TYPES:
        return data, media_type
    still = decode_still(data, index)
    if media_type in accepted:
        return data, media_type  # unchanged: re-encoding could only lose quality
    buffer = io.BytesIO()
    still.save(buffer, "PNG")
    if buffer.tell() > max_bytes:
        raise ProviderError(f"Reference image {index} is larger than {max_bytes} bytes once "
                            "converted to PNG.", code="invalid_input")
    return buffer.getvalue(), "image/png"


def decode_still(data: bytes, index: int) -> Image.Image:
    """Reference image `index` decoded by Pillow, as RGB or RGBA pixels.

    Animated images are refused rather than cut to their first frame, which would silently
    change what the user asked for; so are decompression bombs (a small file that would
    decode to a huge image).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if getattr(image, "n_frames", 1) > 1:
                    raise ProviderError(f"Reference image {index} is animated; use a still "
                                        "image (PNG, JPEG or WebP).", code="invalid_input")
                image.load()  # decode now: a truncated file fails here, not half-way through save
                has_alpha = "A" in image.getbands() or "transparency" in image.info
                still = image.convert("RGBA" if has_alpha else "RGB")
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError,
            OSError, ValueError, SyntaxError, EOFError):
        # Pillow signals broken files with any of these, depending on the format plugin.
        raise ProviderError(f"Reference image {index} is not an image that can be read "
                            "(use PNG, JPEG or WebP).", code="invalid_input") from None
    return still
