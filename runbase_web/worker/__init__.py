"""The run worker: claim, execute, lease renewal; embedded or standalone."""
from .runner import Worker

__all__ = ["Worker"]
