"""Site pages outside the Playground: dashboard, keys, runs, sharing, billing, models,
docs, webhooks, plus the template filters every page uses."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__)

# Each module registers its routes (or filters) on bp.
from . import (  # noqa: E402,F401
    billing_views,
    catalog_views,
    filters,
    runs_views,
    share_views,
    views,
    webhook_views,
)
