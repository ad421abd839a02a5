"""The browser Playground: pick a model, fill its form, run it, watch the status card."""
from __future__ import annotations

from . import uploads, views  # noqa: F401  (registers the routes on bp)
from .blueprint import bp

__all__ = ["bp"]
