"""The JSON API at /api/v1: Bearer keys, Runbase's run objects and error envelope."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import account, errors, models, openapi, runs  # noqa: E402,F401  (routes register on import)
