"""Settings → Credits and admin credit (filled in by the billing feature)."""
from __future__ import annotations

from . import bp  # noqa: F401
