"""The public run object, as the Runbase API spells it: camelCase, ISO times with ms and Z,
micro-USD. One definition for the API's answers and the webhook payloads, so a receiver
gets exactly what GET /api/v1/runs/<id> returns."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..models import Run, RunStatus
from ..urls import absolute_url


def iso_time(moment: datetime | None) -> str | None:
    """`2026-06-01T12:00:04.200Z`: UTC with milliseconds."""
    if moment is None:
        return None
    if moment.utcoffset():
        moment = moment.astimezone(timezone.utc)
    # isoformat is C code, strftime far slower: on a GET this is three calls per answer.
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def run_object(run: Run, public_url: str) -> dict[str, Any]:
    """The public run object; output URLs are absolute on `public_url` (site paths when
    it is empty). `run` is a Run or a row of runs.PUBLIC_COLUMNS."""
    succeeded = run.status == RunStatus.SUCCEEDED.value
    urls = [absolute_url(public_url, path) for path in run.output_urls or []]
    return {
        "id": run.id,
        "model": run.model,
        "status": run.status,
        "costUsd": run.cost_micros,
        "input": run.input,
        "output": {"urls": urls} if succeeded else None,
        "error": run.error,
        "errorCode": run.error_code,
        "createdAt": iso_time(run.created_at),
        "startedAt": iso_time(run.started_at),
        "completedAt": iso_time(run.completed_at),
    }
