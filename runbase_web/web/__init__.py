"""Site pages outside the Playground: dashboard, keys, runs, sharing, billing, models,
docs, webhooks, plus the template filters every page uses."""
from __future__ import annotations

# Each module registers its routes (or filters) on bp.
from . import (  # noqa: F401
    batch_views,
    billing_views,
    catalog_views,
    dashboard_views,
    filters,
    keys_views,
    outputs_views,
    runs_views,
    share_views,
    webhook_views,
)
from .blueprint import bp

__all__ = ["bp"]
