"""The browser Playground: pick a model, fill its form, run it, watch the status card."""
from __future__ import annotations

from . import grid_views, uploads, views  # noqa: F401  (register the routes on bp)
from .blueprint import bp

__all__ = ["bp"]
