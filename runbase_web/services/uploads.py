"""Input files: images users upload to use as references in their own runs.

An upload is checked and re-encoded before anything is kept: PNG, JPEG and WebP stay in
their type, other still images Pillow reads safely (GIF, BMP, TIFF, ...) become PNG, and
anything else is refused, as are files over the size limit and images over MAX_PIXELS
(judged from the header, so a decompression bomb is never decoded). Re-encoding drops
EXIF (GPS included), XMP, ICC, text chunks and comments; the EXIF orientation is applied
to the pixels first, so the picture still stands the right way up.

Each file is private to its owner: served to their session or keys only, usable only in
their runs (`check_image_urls`), and read by adapters straight from storage
(`read_own_file`), never over HTTP.
"""
from __future__ import annotations

import hashlib
import io
import secrets
import struct
import warnings
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InvalidInput, PayloadTooLarge
from ..models import InputFile, StoredFile
from ..storage import SAFE_NAME, Storage
from .files import URL_PREFIX as OUTPUT_URL_PREFIX

#: Path of input files on this server: /api/v1/files/<name>.
URL_PREFIX = "/api/v1/files/"
#: The largest upload by default (RUNBASE_UPLOAD_MAX_BYTES).
MAX_BYTES = 20 * 1024 * 1024
#: The most pixels an uploaded image may have (50 megapixels).
MAX_PIXELS = 50_000_000
#: Formats Pillow may open here. Never EPS or PDF (Ghostscript) or other exotic plugins:
#: a file of any other format is refused before a decoder sees it.
READABLE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "TGA", "ICO")
#: Formats kept as they are (re-encoded); the others become PNG.
KEPT_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
#: Quality of re-encoded JPEG and WebP files: visually lossless.
LOSSY_QUALITY = 95
#: Prefix of the public id; the rest is the random part of the storage name.
ID_PREFIX = "file_"


@dataclass(frozen=True)
class CleanImage:
    """An upload as it will be stored: re-encoded bytes and their media type."""

    data: bytes
    content_type: str


def clean_image(data: bytes, *, max_bytes: int = MAX_BYTES,
                max_pixels: int = MAX_PIXELS) -> CleanImage:
    """The upload re-encoded without metadata, in a type every provider takes; raises
    PayloadTooLarge (over `max_bytes`) or InvalidInput (field `file`) for anything else."""
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    if not data:
        raise InvalidInput("The file is empty.", field="file")
    try:
        with warnings.catch_warnings():
            # Broken metadata in an untrusted file is no news for the server's log: the
            # file is either cleaned or refused.
            warnings.simplefilter("ignore", UserWarning)
            # Pillow's own bomb check warns (not fails) up to twice its limit: fail instead.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=READABLE_FORMATS) as image:
                # From the header alone: a bomb is refused before any pixel is decoded.
                width, height = image.size
                if width * height > max_pixels:
                    raise InvalidInput(
                        f"The image is {width}×{height} pixels; at most "
                        f"{max_pixels // 1_000_000} megapixels are accepted.", field="file")
                if getattr(image, "n_frames", 1) > 1:
                    raise InvalidInput("The image is animated; upload a still image.",
                                       field="file")
                source_format = image.format
                image.load()  # a truncated or corrupt file fails here
                still = ImageOps.exif_transpose(image)
                has_alpha = "A" in still.getbands() or "transparency" in still.info
                pixels = still.convert("RGBA" if has_alpha else "RGB")
    except InvalidInput:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow's own check, from the header too, for images far past MAX_PIXELS.
        raise InvalidInput(f"The image has too many pixels; at most "
                           f"{max_pixels // 1_000_000} megapixels are accepted.",
                           field="file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, TypeError,
            IndexError, KeyError, ZeroDivisionError, struct.error):
        # Pillow signals unknown and broken files (and broken EXIF) with any of these,
        # depending on the plugin.
        raise InvalidInput("The file is not an image that can be read; upload a PNG, JPEG "
                           "or WebP image.", field="file") from None
    content_type = KEPT_FORMATS.get(source_format, "image/png")
    return CleanImage(_encode(pixels, content_type), content_type)


def _encode(pixels: Image.Image, content_type: str) -> bytes:
    """The pixels in `content_type`, with nothing but pixels: no EXIF, ICC or text."""
    buffer = io.BytesIO()
    if content_type == "image/jpeg":
        pixels.convert("RGB").save(buffer, "JPEG", quality=LOSSY_QUALITY, optimize=True)
    elif content_type == "image/webp":
        pixels.save(buffer, "WEBP", quality=LOSSY_QUALITY)
    else:
        pixels.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def too_large(max_bytes: int) -> PayloadTooLarge:
    """The refusal of a file over `max_bytes` (413 payload_too_large, on field `file`)."""
    return PayloadTooLarge(f"The file is larger than {_megabytes(max_bytes)}.", field="file")


def _megabytes(size: int) -> str:
    """`size` in MB for messages ("20 MB")."""
    value = size / (1024 * 1024)
    return f"{value:g} MB" if value >= 1 else f"{size} bytes"


def store_upload(session: Session, storage: Storage, *, user_id: int, data: bytes,
                 max_bytes: int = MAX_BYTES) -> InputFile:
    """Check, clean, store and record one upload of `user_id`, and commit.

    The file and its row exist together or not at all: the row is written (not committed)
    first, then the bytes; a failure of the storage rolls the row back, and a failed commit
    deletes the bytes again.
    """
    clean = clean_image(data, max_bytes=max_bytes)
    name = f"{secrets.token_urlsafe(24)}.{EXTENSIONS[clean.content_type]}"
    row = InputFile(name=name, user_id=user_id, content_type=clean.content_type,
                    size_bytes=len(clean.data), sha256=hashlib.sha256(clean.data).hexdigest())
    session.add(row)
    try:
        session.flush()
        storage.save(name, clean.data)
    except BaseException:
        session.rollback()
        _delete_quietly(storage, name)
        raise
    try:
        session.commit()
    except BaseException:
        _delete_quietly(storage, name)
        raise
    return row


def _delete_quietly(storage: Storage, name: str) -> None:
    """Remove bytes that lost their row; a failure here must not hide the first one."""
    try:
        storage.delete(name)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def file_id(row: InputFile) -> str:
    """The public id of an input file: `file_` and the random part of its name."""
    return ID_PREFIX + row.name.rsplit(".", 1)[0]


def url_path(row: InputFile) -> str:
    """The path part of an input file's URL."""
    return URL_PREFIX + row.name


def file_object(row: InputFile, base_url: str) -> dict:
    """The API's answer about one input file (`url` absolute when `base_url` is set)."""
    return {"id": file_id(row), "url": base_url.rstrip("/") + url_path(row),
            "contentType": row.content_type, "size": row.size_bytes}


def owned_file(session: Session, user_id: int | None, name: str) -> InputFile | None:
    """The input file `name` if `user_id` owns it; None for anyone else or no such file."""
    if user_id is None or not SAFE_NAME.match(name):
        return None
    row = session.scalar(select(InputFile).where(InputFile.name == name))
    return row if row is not None and row.user_id == user_id else None


def _input_name(url: object) -> str | None:
    """The storage name of an input-file URL (any host: the name decides), or None when the
    URL is no input-file URL."""
    if not isinstance(url, str):
        return None
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    if not path.startswith(URL_PREFIX):
        return None
    return path[len(URL_PREFIX):]


def check_image_urls(session: Session, user_id: int, urls: object,
                     field: str = "image_urls") -> None:
    """Refuse (`invalid_input`, on `field`) an input-file URL in `urls` that is not one of
    `user_id`'s uploads: another account's files, or files that do not exist."""
    if not isinstance(urls, list):
        return
    for index, url in enumerate(urls, start=1):
        name = _input_name(url)
        if name is not None and owned_file(session, user_id, name) is None:
            raise InvalidInput(f"Reference image {index} is not one of your uploaded files.",
                               field=field)


def read_own_file(session: Session, storage: Storage, url: str) -> bytes | None:
    """The bytes of an input or output file of this server named by `url`, read from
    storage; None when `url` names no file of ours (fetch it over HTTP instead).

    Recognised by path and recorded name, whatever the host: the server's own address is
    not known here (no request; RUNBASE_PUBLIC_URL may be unset), and the names are random.
    Raises FileNotFoundError when the file is recorded but its bytes are gone.
    """
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    for prefix, table in ((URL_PREFIX, InputFile), (OUTPUT_URL_PREFIX, StoredFile)):
        if path.startswith(prefix):
            name = path[len(prefix):]
            if not SAFE_NAME.match(name):
                return None
            if session.scalar(select(table.id).where(table.name == name)) is None:
                return None
            data = storage.read(name)
            if data is None:
                raise FileNotFoundError(name)
            return data
    return None


def own_file_reader(open_session: Callable[[], Session], storage: Storage
                    ) -> Callable[[str], bytes | None]:
    """`read_own_file` for adapters: each call looks the name up in a short session of its
    own (opened by `open_session`, closed at once), so no transaction stays open while a
    provider works."""
    def read(url: str) -> bytes | None:
        with open_session() as session:
            return read_own_file(session, storage, url)
    return read
