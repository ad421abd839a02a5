"""Models and docs pages (filled in by the models/docs feature)."""
from __future__ import annotations

from . import bp  # noqa: F401
