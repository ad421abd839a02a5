"""The browser Playground: pick a model, fill its form, run it, watch the status card."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("playground", __name__, url_prefix="/playground")

from . import views  # noqa: E402,F401  (registers the routes on bp)
