"""Public share pages /s/<token> (filled in by the sharing feature)."""
from __future__ import annotations

from . import bp  # noqa: F401
