"""Claiming due runs (and due webhook deliveries) with a lease, renewing leases, and
releasing runs to the pool."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ..models import ACTIVE_STATUSES, Run, RunStatus, WebhookDelivery
from ..models import utcnow
from ..services.run_creation import notify_workers
from ..services.runs import UPSTREAM_CANCEL_REQUESTED


def claim_due(session: Session, owner: str, limit: int, lease_seconds: int) -> list[str]:
    """Lease up to `limit` due runs to `owner` and commit; returns their ids.

    Due means active, not leased by a live worker (an expired lease is how a crashed
    worker's runs come back), and not waiting for a later check. PostgreSQL skips
    rows another worker is claiming; SQLite's write lock serialises claimers.
    """
    at = utcnow()
    due = (select(Run.id)
           .where(Run.status.in_(ACTIVE_STATUSES),
                  or_(Run.lease_until.is_(None), Run.lease_until < at),
                  or_(Run.next_check_at.is_(None), Run.next_check_at <= at))
           # By due time, a new run being due since its creation: first come, first
           # served, so a crowd of in-flight jobs whose polls fall due again and again
           # can never keep a new run from reaching its provider.
           .order_by(func.coalesce(Run.next_check_at, Run.created_at), Run.id).limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(session.scalars(due))
    if ids:
        session.execute(update(Run).where(Run.id.in_(ids)).values(
            lease_owner=owner, lease_until=at + timedelta(seconds=lease_seconds),
            status=RunStatus.PROCESSING.value, started_at=func.coalesce(Run.started_at, at)))
    session.commit()
    return ids


def claim_due_cancels(session: Session, limit: int, lease_seconds: int) -> list[str]:
    """Take up to `limit` ended runs whose upstream job a worker must ask the provider to
    stop, and commit; returns their ids. Pushing next_check_at out by the lease keeps
    other workers off them; a worker that dies leaves them due again after that."""
    at = utcnow()
    due = (select(Run.id)
           .where(Run.upstream_cancel == UPSTREAM_CANCEL_REQUESTED, Run.next_check_at <= at)
           .order_by(Run.next_check_at).limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(session.scalars(due))
    if ids:
        session.execute(update(Run).where(Run.id.in_(ids)).values(
            next_check_at=at + timedelta(seconds=lease_seconds)))
    session.commit()
    return ids


def renew_leases(session: Session, owner: str, run_ids: list[str], lease_seconds: int) -> int:
    """Extend the leases `owner` still holds (a heartbeat); returns how many it holds."""
    if not run_ids:
        return 0
    result = session.execute(update(Run).where(Run.id.in_(run_ids), Run.lease_owner == owner)
                             .values(lease_until=utcnow() + timedelta(seconds=lease_seconds)))
    session.commit()
    return result.rowcount


def release(session: Session, run_id: str, owner: str, *, check_after: float, **changes) -> bool:
    """Give a run back to the pool, to be looked at again after `check_after` seconds."""
    values = dict(changes, lease_owner=None, lease_until=None,
                  next_check_at=utcnow() + timedelta(seconds=max(check_after, 0)))
    result = session.execute(update(Run).where(
        Run.id == run_id, Run.lease_owner == owner, Run.status.in_(ACTIVE_STATUSES)).values(**values))
    return result.rowcount == 1


def claim_due_deliveries(session: Session, limit: int, lease_seconds: float, *,
                         at: datetime | None = None) -> list[tuple[str, datetime]]:
    """Lease up to `limit` due webhook deliveries and commit; returns (id, lease_until) pairs.

    Same pattern as runs: PostgreSQL skips rows another worker is claiming, SQLite's
    write lock serialises claimers. The lease_until value doubles as the claim token:
    only the holder of that exact lease may record the outcome (see webhook_delivery).
    """
    at = at or utcnow()
    due = (select(WebhookDelivery.id)
           .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= at,
                  or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < at))
           .order_by(WebhookDelivery.next_attempt_at).limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(session.scalars(due))
    lease_until = at + timedelta(seconds=lease_seconds)
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                        .values(lease_until=lease_until))
    session.commit()
    return [(delivery_id, lease_until) for delivery_id in ids]


def give_back_leases(session: Session, owner: str) -> list[str]:
    """Clear every lease `owner` holds on a run it has not finished and make the run due
    now, then commit; returns their ids. A worker that stops (SIGTERM) calls this last,
    so other workers take its runs at once instead of when the leases would have expired.

    Conditional on the owner and an active status: a run that ended meanwhile, or one
    that was never ours, is left alone. On PostgreSQL, listening workers are woken.
    """
    runs = Run.__table__
    given_back = list(session.scalars(
        update(runs).where(runs.c.lease_owner == owner, runs.c.status.in_(ACTIVE_STATUSES))
        .values(lease_owner=None, lease_until=None, next_check_at=utcnow())
        .returning(runs.c.id)))
    if given_back:
        notify_workers(session)
    session.commit()
    return given_back
