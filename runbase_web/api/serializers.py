"""Run objects as API.md spells them: camelCase, ISO times with ms and Z, micro-USD."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import Run, RunStatus


def iso_time(moment: datetime | None) -> str | None:
    """`2026-06-01T12:00:04.200Z`: UTC with milliseconds."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def absolute_urls(paths: list[str] | None, base_url: str) -> list[str]:
    """Stored file paths as absolute URLs on this server."""
    return [base_url.rstrip("/") + path for path in paths or []]


def run_to_api(run: Run, base_url: str) -> dict[str, Any]:
    """The public run object."""
    succeeded = run.status == RunStatus.SUCCEEDED.value
    return {
        "id": run.id,
        "model": run.model,
        "status": run.status,
        "costUsd": run.cost_micros,
        "input": run.input,
        "output": {"urls": absolute_urls(run.output_urls, base_url)} if succeeded else None,
        "error": run.error,
        "errorCode": run.error_code,
        "createdAt": iso_time(run.created_at),
        "startedAt": iso_time(run.started_at),
        "completedAt": iso_time(run.completed_at),
    }
