"""A run's outputs as pages show them: the path to display and the absolute URL to copy.
Shared by the Playground's cards, the run pages and compare."""
from __future__ import annotations

from typing import Any

from ..models import Run
from ..services.files import is_video
from ..urls import absolute_url


def output_items(run: Run, base_url: str) -> list[dict[str, Any]]:
    """A run's outputs: the same-origin path to display, the absolute URL to copy."""
    return [{"src": path, "url": absolute_url(base_url, path), "is_video": is_video(path)}
            for path in run.output_urls or []]
