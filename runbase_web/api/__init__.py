"""The JSON API at /api/v1: Bearer keys, Runbase's run objects and error envelope."""
from . import account, errors, files, models, openapi, runs  # noqa: F401  (routes register on import)
from .blueprint import bp

__all__ = ["bp"]
