"""The app's response class, and a helper for the headers hooks add."""
from __future__ import annotations

from typing import Iterable

from flask import Response
from werkzeug.datastructures import Headers

from .jsontext import scrub


class PrintableResponse(Response):
    """A response whose text body always encodes: a lone surrogate in stored text (e.g. a
    provider's error message kept from before the boundary refused them) is sent as U+FFFD
    instead of failing the whole page with a UnicodeEncodeError."""

    def set_data(self, value: bytes | str) -> None:
        """Set the body; `str` bodies are encoded as UTF-8 with lone surrogates replaced."""
        if isinstance(value, str):
            try:
                value = value.encode("utf-8")
            except UnicodeEncodeError:
                value = scrub(value).encode("utf-8")
        super().set_data(value)


def add_missing_headers(headers: Headers, pairs: Iterable[tuple[str, str]]) -> None:
    """Add each (name, value) whose name the headers don't hold yet; a value a view set
    itself is kept. Werkzeug's `setdefault` raises and catches a KeyError per missing
    header, which on the API's hottest paths cost more than the rest of this hook."""
    present = {name.lower() for name, _value in headers}
    for name, value in pairs:
        if name.lower() not in present:
            headers.add(name, value)
