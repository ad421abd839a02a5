"""Reading a run recipe back out of a PNG, for tests: the server only writes recipes
(runbase_web/recipe.py); browsers read them (static/js/playground.js) and post the JSON,
which the Playground parses with the API's strict rules. This reader checks what was
written, and is as careful as the browser's: bounded sizes, damaged chunks give None."""
from __future__ import annotations

import zlib

from runbase_web.jsontext import loads_strict
from runbase_web.recipe import (KEYWORD, MAX_RECIPE_BYTES, TEXT_CHUNKS, PngError, _keyword,
                                png_chunks)

#: Files larger than this are not searched for a recipe at all.
MAX_PNG_BYTES = 64 * 1024 * 1024


def read_png_recipe(png_bytes: bytes) -> dict | None:
    """The recipe in a PNG's `runbase` chunk, or None: not a PNG, no such chunk, or a
    chunk that is damaged, too large or not a JSON object. Never raises."""
    if not isinstance(png_bytes, (bytes, bytearray, memoryview)) or len(png_bytes) > MAX_PNG_BYTES:
        return None
    data = bytes(png_bytes)
    try:
        for kind, start, end in png_chunks(data):
            if kind in TEXT_CHUNKS and _keyword(data, start) == KEYWORD:
                return _decode(kind, data[start + 8:end - 4])
            if kind == b"IEND":
                return None
    except PngError:
        return None
    return None


def _decode(kind: bytes, body: bytes) -> dict | None:
    """The JSON object in one text chunk's body, or None."""
    if len(body) > MAX_RECIPE_BYTES + 100:
        return None
    rest = body[len(KEYWORD) + 1:]
    try:
        if kind == b"tEXt":
            text = rest.decode("latin-1")
        elif kind == b"zTXt":
            text = _inflate(rest[1:]).decode("latin-1")
        else:
            compressed, rest = rest[0], rest[2:]
            _language, rest = rest.split(b"\x00", 1)
            _translated, rest = rest.split(b"\x00", 1)
            text = (_inflate(rest) if compressed else rest).decode("utf-8")
        value = loads_strict(text)  # a recipe is outside input: the same rules as the API
    except (IndexError, ValueError, zlib.error):
        return None
    return value if isinstance(value, dict) else None


def _inflate(data: bytes) -> bytes:
    """zlib-decompress at most MAX_RECIPE_BYTES (a small bomb can't grow large)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_RECIPE_BYTES + 1)
    if len(out) > MAX_RECIPE_BYTES:
        raise ValueError("recipe too large")
    return out
