"""The run recipe carried inside PNG outputs: a `runbase` text chunk holding JSON.

{"model": ..., "input": {...}, "run": "<run page URL>", "runId": ...} lets anyone who has
the file see how it was made, and lets the Playground restore the form from a dropped
file. The chunk is inserted before IEND; the image data is copied byte for byte, never
re-encoded, so pixels (and every other chunk) stay exactly as the provider made them.
"""
from __future__ import annotations

import json
import struct
import zlib

from .urls import absolute_url

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEYWORD = b"runbase"
TEXT_CHUNKS = (b"iTXt", b"tEXt", b"zTXt")
#: A recipe is a model id and a form's worth of input; anything bigger is not ours.
MAX_RECIPE_BYTES = 256 * 1024


class PngError(ValueError):
    """The bytes are not a well-formed PNG chunk stream."""


def embed_png_recipe(png_bytes: bytes, recipe: dict) -> bytes:
    """The same PNG with `recipe` as an iTXt `runbase` chunk just before IEND.

    A `runbase` chunk already in the file (e.g. written by an upstream Runbase) is
    replaced, so the file describes this server's run. Raises PngError if the bytes are
    not a PNG that ends with IEND.
    """
    text = json.dumps(recipe, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(text) > MAX_RECIPE_BYTES:
        raise ValueError("the recipe is too large to embed")
    kept, iend = [], None
    for kind, start, end in png_chunks(png_bytes):
        if kind == b"IEND":
            iend = start
            break
        if not (kind in TEXT_CHUNKS and _keyword(png_bytes, start) == KEYWORD):
            kept.append(png_bytes[start:end])
    if iend is None:
        raise PngError("the PNG has no IEND chunk")
    # iTXt: keyword, NUL, compression flag 0, method 0, empty language, NUL, empty
    # translated keyword, NUL, then UTF-8 text.
    body = KEYWORD + b"\x00\x00\x00\x00\x00" + text
    return b"".join([PNG_SIGNATURE, *kept, _chunk(b"iTXt", body), png_bytes[iend:]])


def strip_png_recipe(png_bytes: bytes) -> bytes:
    """The PNG without its `runbase` chunks (unchanged if it has none or is not a PNG)."""
    try:
        chunks = list(png_chunks(png_bytes))
    except PngError:
        return png_bytes
    kept = [png_bytes[start:end] for kind, start, end in chunks
            if not (kind in TEXT_CHUNKS and _keyword(png_bytes, start) == KEYWORD)]
    return PNG_SIGNATURE + b"".join(kept)


def png_chunks(data: bytes):
    """(type, start, end) of each chunk up to IEND, start at its length field, end after
    its CRC. Raises PngError for bytes that are not a PNG or a chunk cut short."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("not a PNG file")
    position = len(PNG_SIGNATURE)
    while position < len(data):
        if position + 12 > len(data):
            raise PngError("truncated chunk")
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        end = position + 12 + length
        if end > len(data):
            raise PngError("truncated chunk")
        yield kind, position, end
        if kind == b"IEND":
            return
        position = end


def _keyword(data: bytes, start: int) -> bytes:
    """A text chunk's keyword (up to its NUL, at most 79 bytes)."""
    body = data[start + 8:start + 8 + 80]
    return body.split(b"\x00", 1)[0]


def _chunk(kind: bytes, body: bytes) -> bytes:
    """One chunk: length, type, data and the CRC-32 of type and data."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def recipe_for_run(run, base_url: str) -> dict:
    """The recipe of one run: its model, its stored input, its run page URL and id.

    `base_url` is RUNBASE_PUBLIC_URL (urls.public_base_url); without it the worker knows
    no host, so the run page URL is the site-relative path, as in webhook payloads.
    """
    return {"model": run.model, "input": run.input,
            "run": absolute_url(base_url, f"/runs/{run.id}"), "runId": run.id}
