"""Runs: read, list, end (succeeded, failed, canceled) and the upstream-cancel record.
Creating them is run_creation's."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from ..driver_query import DriverQuery
from ..errors import RunNotFound
from ..models import Run, RunStatus, is_active, utcnow
from . import ledger, webhooks

#: Run.upstream_cancel states (see the column's comment).
UPSTREAM_CANCEL_REQUESTED, UPSTREAM_CANCEL_SENT, UPSTREAM_CANCEL_FAILED = "requested", "sent", "failed"
#: The one clock (models.utcnow), under the name the worker and the cancel records use.


def get_run(session: Session, user_id: int, run_id: str) -> Run:
    """The user's run; another account's run is indistinguishable from a missing one."""
    run = session.get(Run, run_id) if isinstance(run_id, str) and len(run_id) <= 40 else None
    if run is None or run.user_id != user_id:
        raise RunNotFound(f"No run with id '{run_id}' for this account.")
    return run


#: The columns the public run object is made of (run_object reads them by name).
PUBLIC_COLUMNS = tuple(Run.__table__.c[name] for name in (
    "id", "model", "status", "cost_micros", "input", "output_urls", "error", "error_code",
    "created_at", "started_at", "completed_at"))
# Read on the driver's cursor: this is the API's hottest statement (see driver_query).
_PUBLIC_RUN = DriverQuery(select(*PUBLIC_COLUMNS).where(
    Run.__table__.c.id == bindparam("run_id"), Run.__table__.c.user_id == bindparam("user_id")))


def get_public_run(connection: Connection, user_id: int, run_id: str):
    """The user's run as a row of PUBLIC_COLUMNS: what GET /api/v1/runs/<id> answers with,
    read in one query without building an ORM object."""
    row = None
    if isinstance(run_id, str) and len(run_id) <= 40:
        row = _PUBLIC_RUN.first(connection, {"run_id": run_id, "user_id": user_id})
    if row is None:
        raise RunNotFound(f"No run with id '{run_id}' for this account.")
    return row


def recent_runs(session: Session, user_id: int, limit: int = 20) -> list[Run]:
    """The user's newest runs."""
    return list(session.scalars(select(Run).where(Run.user_id == user_id)
                                .order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)))


_runs = Run.__table__
_SUCCEED = (update(_runs).where(_runs.c.id == bindparam("run_id"),
                                is_active(_runs.c.status))
            .values(status=RunStatus.SUCCEEDED.value, output_urls=bindparam("urls"),
                    completed_at=bindparam("at"), lease_owner=None, lease_until=None,
                    next_check_at=None)
            .returning(_runs.c.webhook_url))


def mark_succeeded(session: Session, run_id: str, urls: list[str], *, public_url: str) -> bool:
    """End an active run as succeeded with its stored files' site paths; False if it had
    already ended. `public_url` (RUNBASE_PUBLIC_URL) makes the webhook's URLs absolute."""
    ended = session.execute(_SUCCEED, {"run_id": run_id, "urls": urls, "at": utcnow()}).first()
    if ended is not None and ended.webhook_url:
        webhooks.enqueue_for_run(session, run_id, public_url=public_url)
    return ended is not None


def mark_failed(session: Session, run_id: str, *, message: str, code: str) -> bool:
    """End an active run as failed with a refund, exactly once (see ledger.fail_and_refund)."""
    ended = ledger.fail_and_refund(session, run_id, message=message, code=code)
    if ended is not None and ended.webhook_url:
        # A failed run's object has no output URLs, so no base is needed for its webhook.
        webhooks.enqueue_for_run(session, run_id, public_url="")
    return ended is not None


def cancel_run(session: Session, user_id: int, run_id: str) -> tuple[Run, bool]:
    """Cancel the user's run if it is still active: failed, errorCode canceled, refunded.

    Returns (run, canceled_now). A run that already ended is returned unchanged, so
    cancel racing completion leaves exactly one outcome.
    """
    run = get_run(session, user_id, run_id)
    canceled = mark_failed(session, run.id, message="Canceled by the user.", code="canceled")
    if canceled:
        # Only recorded here: a worker asks the provider to stop the job (request
        # handlers never call providers, whose answers can take many seconds).
        request_upstream_cancel(session, run.id)
    session.refresh(run)
    return run, canceled


def list_runs(session: Session, user_id: int, *, limit: int, after: str | None = None,
              status: str | None = None, model: str | None = None) -> tuple[list[Run], bool]:
    """The user's runs newest first, after the cursor run; returns (page, has_more)."""
    query = select(Run).where(Run.user_id == user_id)
    if status:
        query = query.where(Run.status == status)
    if model:
        query = query.where(Run.model == model)
    if after:
        cursor = get_run(session, user_id, after)
        query = query.where((Run.created_at < cursor.created_at)
                            | ((Run.created_at == cursor.created_at) & (Run.id < cursor.id)))
    rows = list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def run_summary(run: Run) -> dict[str, Any]:
    """Fields the pages show about a run besides its outputs."""
    elapsed_until = run.completed_at or utcnow()
    return {"elapsed_seconds": max(0.0, (elapsed_until - run.created_at).total_seconds())}


def run_seed(run: Run) -> int | None:
    """The seed a run used, when its model takes one."""
    seed = (run.input or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def request_upstream_cancel(session: Session, run_id: str, *, upstream_id: str | None = None,
                            upstream_state: dict | None = None) -> bool:
    """Record that the provider should be asked to stop the upstream job of an ended run,
    due now; a worker does the asking. `upstream_id` names a job that was created after the
    run had already ended (a cancel racing the provider's create). Returns whether recorded."""
    values = {"upstream_cancel": UPSTREAM_CANCEL_REQUESTED, "next_check_at": utcnow()}
    if upstream_id is not None:
        values.update(upstream_id=upstream_id, upstream_state=upstream_state)
    condition = Run.upstream_id.is_(None) if upstream_id is not None else Run.upstream_id.is_not(None)
    result = session.execute(update(Run).where(
        Run.id == run_id, Run.status == RunStatus.FAILED.value, Run.upstream_cancel.is_(None),
        condition).values(**values))
    return result.rowcount == 1


def record_upstream_cancel(session: Session, run_id: str, *, sent: bool, upstream_state: dict,
                           retry_after: float | None = None) -> None:
    """Record how asking the provider to stop a job went: sent, to be retried after
    `retry_after` seconds, or (no retry_after) failed for good."""
    if sent:
        outcome, check_at = UPSTREAM_CANCEL_SENT, None
    elif retry_after is not None:
        outcome, check_at = UPSTREAM_CANCEL_REQUESTED, utcnow() + timedelta(seconds=retry_after)
    else:
        outcome, check_at = UPSTREAM_CANCEL_FAILED, None
    session.execute(update(Run).where(Run.id == run_id,
                                      Run.upstream_cancel == UPSTREAM_CANCEL_REQUESTED)
                    .values(upstream_cancel=outcome, next_check_at=check_at,
                            upstream_state=upstream_state))
