"""The app's response class."""
from __future__ import annotations

from flask import Response

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
