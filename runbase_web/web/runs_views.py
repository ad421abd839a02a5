"""Runs gallery, run page, compare (filled in by the runs-pages feature)."""
from __future__ import annotations

from . import bp  # noqa: F401
