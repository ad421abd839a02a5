"""Settings → Webhooks and delivery resend (filled in by the webhooks feature)."""
from __future__ import annotations

from . import bp  # noqa: F401
