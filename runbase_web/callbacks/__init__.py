"""Provider callbacks at /callbacks: signed POSTs from Replicate, fal and an upstream
Runbase saying a run's job has ended (services/callbacks.py says what is checked)."""
from . import views  # noqa: F401  (routes register on import)
from .blueprint import bp

__all__ = ["bp"]
