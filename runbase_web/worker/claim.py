"""Claiming due runs (and due webhook deliveries) with a lease, renewing leases, and
releasing runs to the pool.

The worker claims through claim_work: one transaction writes back the polls that stayed
pending and the runs that succeeded (finish_group.py), leases the next batch (counting
the attempts of runs about to start in the same write) and reads what each run's turn
needs (ClaimedRun), so a turn reads nothing more.
A claim that finds fewer runs than it has slots costs six round trips on PostgreSQL:
BEGIN, two reads, the lease, when the next waiting work falls due, COMMIT. The functions
named choose_*, lease_* and release_many work in the caller's transaction; the other
claim_* functions commit their own."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import Row, bindparam, case, func, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from .. import state
from ..catalog import ModelSpec, effective_adapter
from ..extensions import db
from ..models import ACTIVE_STATUSES, Run, RunStatus, WebhookDelivery, is_active
from ..models import utcnow
from ..services.run_creation import notify_workers
from ..services.runs import UPSTREAM_CANCEL_REQUESTED
from .finish_group import Finished, write_finished


#: Up to this share of a claim's slots go to runs never claimed yet, ahead of polls that
#: fell due earlier; the rest go by due time. A worker that cannot keep up with its polls
#: (more jobs in flight than its threads can look at on schedule) then still starts new
#: runs at once, while polls keep the other half and run late, as they would anyway. A
#: claim of one slot goes by due time alone.
NEW_RUN_SHARE = 0.5

_RUNS = Run.__table__
_C = _RUNS.c
#: What a run's turn needs (see execute.ClaimedRun), read by the claim itself.
TURN_COLUMNS = (_C.id, _C.user_id, _C.model, _C.input, _C.deadline_at, _C.attempts,
                _C.upstream_id, _C.upstream_state, _C.adapter, _C.webhook_url,
                _C.callback_body)
#: Times bound outside a plain column comparison (CASE, COALESCE) are typed explicitly, so
#: they are stored as naive UTC like every other time (models.UTCDateTime).
_NOW = bindparam("now", type_=_C.next_check_at.type)
_LEASE_FREE = or_(_C.lease_until.is_(None), _C.lease_until < bindparam("at"))


# The statements of the claim transaction are built once: it runs many times a second
# on a busy worker, and building and caching a statement costs more than running it.
def _fresh_runs(aged: bool = False):
    """Runs that never came to rest, oldest first in each of the two kinds: new runs
    (pending) and a crashed worker's first tries (processing, lease expired). With
    `aged`, only runs created by `fresh_before`: a worker that is not the first responder
    leaves newer ones to it (runner.HELPER_LAG_SECONDS). Not applied otherwise: on
    SQLite a run created while the claim waited for the write lock is newer than the
    claim's clock, and is still due.

    One SELECT per status, joined by UNION ALL: each reads ix_runs_due (status, next
    check, created_at, id) in order and stops at `limit`. One SELECT for both statuses
    had to read and sort every queued run on every claim, inside the write transaction
    (3 ms a claim with 3,000 runs queued on SQLite, and growing with the queue).
    """
    def of(status: str):
        query = (select(*TURN_COLUMNS, _C.created_at, _C.next_check_at)
                 .where(_C.status == status, _C.next_check_at.is_(None), _LEASE_FREE)
                 # Oldest first. status and next_check_at are the same on every row read:
                 # ordering by them as well is the index's own order, which PostgreSQL
                 # then reads as it is (an IS NULL is no equality to its planner, so
                 # ORDER BY created_at alone made it sort the queue).
                 .order_by(_C.status, _C.next_check_at, _C.created_at, _C.id)
                 .limit(bindparam("limit"))
                 .with_for_update(skip_locked=True))
        if aged:
            query = query.where(_C.created_at <= bindparam("fresh_before"))
        return select(query.subquery(status))
    return union_all(*(of(status) for status in ACTIVE_STATUSES))


_FRESH_RUNS = _fresh_runs()
_AGED_FRESH_RUNS = _fresh_runs(aged=True)
#: Runs waiting for a look (a poll, a retry) that has fallen due, most overdue first:
#: read from the low end of an index range (ix_runs_due), so a claim costs the same with
#: ten or ten thousand jobs in flight (ordering both kinds by one expression sorted every
#: due run: 7 ms a claim at 10,000).
_WAITING_RUNS = (select(*TURN_COLUMNS, _C.created_at, _C.next_check_at)
                 .where(_C.status == RunStatus.PROCESSING.value,
                        _C.next_check_at <= bindparam("at"), _LEASE_FREE)
                 # No tie-breaker: the index's own order lets the scan stop at `limit`.
                 .order_by(_C.next_check_at)
                 .limit(bindparam("limit"))
                 .with_for_update(skip_locked=True))
#: One run's lease, written per row (executemany: one round trip for the batch) because
#: a run about to start has its attempt counted and its adapter fixed in the same write.
_LEASE = (update(_RUNS).where(_C.id == bindparam("run_id"))
          .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"),
                  status=RunStatus.PROCESSING.value,
                  # A run created while this claim waited for SQLite's write lock is newer
                  # than the claim's clock: it never starts before it was created.
                  started_at=func.coalesce(_C.started_at, case(
                      (_C.created_at > _NOW, _C.created_at), else_=_NOW)),
                  # A provider's callback is read once: the turn that leased it takes it.
                  callback_body=None,
                  attempts=bindparam("counted"), adapter=bindparam("chosen")))
_RELEASE = (update(_RUNS).where(_C.id == bindparam("run_id"), _C.lease_owner == bindparam("owner"),
                                # Not IN (...): an expanding list can't be sent as executemany.
                                or_(*(_C.status == status for status in ACTIVE_STATUSES)))
            .values(lease_owner=None, lease_until=None,
                    next_check_at=case((_C.callback_body.is_not(None), _NOW),
                                       else_=bindparam("check_at", type_=_C.next_check_at.type)),
                    upstream_id=bindparam("job_id"), upstream_state=bindparam("job_state")))


@dataclass(frozen=True)
class Release:
    """A poll that stays pending, to be written back: the run returns to the pool, due
    again at `check_at`, with the job's id and state."""

    run_id: str
    check_at: datetime
    upstream_id: str | None
    upstream_state: dict | None


def choose_due_runs(session: Session, limit: int, *, at: datetime,
                    fresh_before: datetime | None = None) -> list[Row]:
    """Lock up to `limit` due runs in the session's transaction and return their
    TURN_COLUMNS (lease_runs then leases them). Up to NEW_RUN_SHARE of them are runs
    never claimed yet (with `fresh_before`, only those created by then), the rest go by
    due time.

    Due means active, not leased by a live worker (an expired lease is how a crashed
    worker's runs come back), and not waiting for a later check. PostgreSQL skips
    rows another worker is claiming; SQLite's write lock serialises claimers. Never
    more than `limit` rows of each kind are read: the caller passes its free slots.
    """
    if limit <= 0:
        return []
    params = {"at": at, "limit": limit}
    if fresh_before is None:
        fresh = list(session.execute(_FRESH_RUNS, params))
    else:
        fresh = list(session.execute(_AGED_FRESH_RUNS, {**params, "fresh_before": fresh_before}))
    fresh = sorted(fresh, key=lambda row: (row.created_at, row.id))[:limit]  # both kinds
    waiting = list(session.execute(_WAITING_RUNS, params))
    return _by_due_time(fresh, waiting, limit)


@dataclass(frozen=True)
class Lease:
    """A chosen run as its lease writes it: with its attempts (one more for a run about
    to call its provider) and the adapter it runs with."""

    run_id: str
    attempts: int
    adapter: str | None


def lease_runs(session: Session, owner: str, leases: list[Lease], lease_seconds: float, *,
               at: datetime) -> None:
    """Lease the chosen runs to `owner` in the session's transaction (one statement for
    the batch): processing, started (once), the callback taken, attempts and adapter
    written."""
    if leases:
        until = at + timedelta(seconds=lease_seconds)
        session.execute(_LEASE, [{"run_id": lease.run_id, "owner": owner, "now": at,
                                  "until": until, "counted": lease.attempts,
                                  "chosen": lease.adapter} for lease in leases])


def _by_due_time(fresh: list[Row], waiting: list[Row], limit: int) -> list[Row]:
    """Up to `limit` of the candidates: the oldest fresh runs for NEW_RUN_SHARE of the
    slots, then the rest by due time, a fresh run being due since its creation (first
    come, first served, so a crowd of in-flight jobs whose polls fall due again and again
    can never keep a new run from its provider). Candidates not chosen are unlocked at
    commit."""
    reserved = fresh[:int(limit * NEW_RUN_SHARE)]
    others = sorted(fresh[len(reserved):] + waiting,
                    key=lambda row: (row.next_check_at or row.created_at, row.id))
    return reserved + others[:limit - len(reserved)]


def release_many(session: Session, owner: str, releases: list[Release]) -> None:
    """Write back polls that stay pending, in the session's transaction (one statement
    for the batch). A run `owner` no longer holds, or that has ended (canceled), is left
    as it is."""
    if releases:
        now = utcnow()
        session.execute(_RELEASE, [{"run_id": item.run_id, "owner": owner, "now": now,
                                    "check_at": item.check_at, "job_id": item.upstream_id,
                                    "job_state": item.upstream_state} for item in releases])


def lease_due_cancels(session: Session, limit: int, lease_seconds: float, *,
                      at: datetime | None = None) -> list[str]:
    """Take up to `limit` ended runs whose upstream job a worker must ask the provider to
    stop, in the session's transaction; returns their ids. Pushing next_check_at out by
    the lease keeps other workers off them; a worker that dies leaves them due again
    after that."""
    at = at or utcnow()
    due = (select(Run.id)
           .where(Run.upstream_cancel == UPSTREAM_CANCEL_REQUESTED, Run.next_check_at <= at)
           .order_by(Run.next_check_at).limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(session.scalars(due))
    if ids:
        session.execute(update(Run).where(Run.id.in_(ids)).values(
            next_check_at=at + timedelta(seconds=lease_seconds)))
    return ids


_NEXT_POLL = (select(_C.next_check_at)
              .where(_C.status == RunStatus.PROCESSING.value, _C.next_check_at > bindparam("at"))
              .order_by(_C.next_check_at).limit(1).scalar_subquery())
_FIRST_CANCEL = (select(_C.next_check_at)
                 .where(_C.upstream_cancel == UPSTREAM_CANCEL_REQUESTED,
                        _C.next_check_at.is_not(None))
                 .order_by(_C.next_check_at).limit(1).scalar_subquery())
_WAITING_TIMES = select(_NEXT_POLL.label("poll"), _FIRST_CANCEL.label("cancel"))


def waiting_times(session: Session, at: datetime) -> tuple[datetime | None, datetime | None]:
    """In one statement: when the next run waiting for a later look (a poll, a retry)
    falls due after `at`, and when the earliest requested upstream cancel falls due, due
    already or not (None when none waits). Runs created from now on are not counted:
    creation wakes the worker. Both look-ups walk an index from its low end."""
    row = session.execute(_WAITING_TIMES, {"at": at}).one()
    return row.poll, row.cancel


def delivery_due(session: Session, at: datetime) -> bool:
    """Whether some webhook delivery is due and unclaimed (one indexed look, no lease)."""
    return session.scalar(select(WebhookDelivery.id).where(*_delivery_is_due(at)).limit(1)) is not None


def _delivery_is_due(at: datetime) -> tuple:
    return (WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= at,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < at))


def renew_leases(session: Session, owner: str, run_ids: list[str], lease_seconds: int) -> int:
    """Extend the leases `owner` still holds (a heartbeat), except on runs another
    transaction is writing right now; returns how many it renewed.

    It never waits for a row (SKIP LOCKED, on PostgreSQL): the worker's claim
    transaction writes many of the same runs (succeeded ones, pending polls) in another
    order, and each waiting for the other was a deadlock that PostgreSQL broke only
    after its deadlock_timeout, a second in which the worker claimed nothing (every
    ten seconds or so at a hundred runs a second). A run skipped is being written by
    its own worker (its lease ends there, or the write rolls back and the next
    heartbeat renews it, a third of the lease before it runs out) or by a short
    single-row write (a cancel, a provider's callback).
    """
    if not run_ids:
        return 0
    held = (select(Run.id).where(Run.id.in_(run_ids), Run.lease_owner == owner)
            .with_for_update(skip_locked=True))
    result = session.execute(update(Run).where(Run.id.in_(held))
                             .values(lease_until=utcnow() + timedelta(seconds=lease_seconds)))
    session.commit()
    return result.rowcount


def release(session: Session, run_id: str, owner: str, *, check_after: float, **changes) -> bool:
    """Give a run back to the pool, to be looked at again after `check_after` seconds, or
    at once when its provider called back while the worker held it (a release, and a
    callback that came before the job id was committed, must not wait for a later poll)."""
    now = utcnow()
    time_type = Run.__table__.c.next_check_at.type  # stored as naive UTC (see _NOW)
    values = dict(changes, lease_owner=None, lease_until=None,
                  next_check_at=case((Run.callback_body.is_not(None), literal(now, time_type)),
                                     else_=literal(now + timedelta(seconds=max(check_after, 0)),
                                                   time_type)))
    result = session.execute(update(Run).where(
        Run.id == run_id, Run.lease_owner == owner, is_active(Run.status)).values(**values))
    return result.rowcount == 1


def claim_due_deliveries(session: Session, limit: int, lease_seconds: float, *,
                         at: datetime | None = None) -> list[tuple[str, datetime]]:
    """Lease up to `limit` due webhook deliveries and commit; returns (id, lease_until) pairs.

    Same pattern as runs: PostgreSQL skips rows another worker is claiming, SQLite's
    write lock serialises claimers. The lease_until value doubles as the claim token:
    only the holder of that exact lease may record the outcome (see webhook_delivery).
    """
    at = at or utcnow()
    due = (select(WebhookDelivery.id).where(*_delivery_is_due(at))
           .order_by(WebhookDelivery.next_attempt_at).limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(session.scalars(due))
    lease_until = at + timedelta(seconds=lease_seconds)
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                        .values(lease_until=lease_until))
    session.commit()
    return [(delivery_id, lease_until) for delivery_id in ids]


@dataclass(frozen=True)
class ClaimedRun:
    """What executing a leased run needs, read in the claim's transaction (so its turn
    reads nothing more). Lives only while a worker thread has the run."""

    id: str
    user_id: int
    model: str
    input: dict
    deadline_at: datetime
    attempts: int
    upstream_id: str | None
    upstream_state: dict | None
    adapter: str | None
    webhook_url: str | None
    #: (message, error code) when the run must end without a provider call.
    refusal: tuple[str, str] | None = None
    #: A verified provider callback taken with the lease (services/callbacks.py): read
    #: instead of polling. A worker that dies with it leaves the run to the fallback poll.
    callback: dict | None = None
    #: The claim counted this turn as an attempt (a provider call is about to start).
    attempt_counted: bool = False


@dataclass(frozen=True)
class Claim:
    """What one claim transaction found."""

    runs: list[ClaimedRun]
    #: Ended runs whose upstream job must be stopped (see cancel_upstream_job).
    cancels: list[str]
    #: Fewer than the free slots were due: everything due was taken.
    short: bool
    #: When a run waiting for a later look falls due next (known when `short`).
    next_due: datetime | None
    #: A webhook delivery is due (only looked at when asked).
    delivery_due: bool
    #: Per succeeded run written (`finished`), whether this claim ended it.
    ended: list[bool] = field(default_factory=list)


def claim_work(app: Flask, owner: str, slots: int, lease_seconds: float, *,
               releases: list[Release] = (), finished: list[Finished] = (),
               peek_deliveries: bool = False, fresh_lag: float = 0.0) -> Claim:
    """One transaction: write back `releases` (polls that stayed pending), write the
    `finished` runs (finish_group.py), lease up to `slots` due runs, then due upstream
    cancels for the slots left. A run about to be started has its attempt counted and
    its adapter fixed in it too. With `fresh_lag`, runs never claimed are taken only
    once they are that many seconds old. When less than `slots` was due, it also reads
    when the next waiting run falls due, so the caller can sleep until then instead of
    asking again."""
    with app.app_context():
        session = db.session
        try:
            at = utcnow()
            release_many(session, owner, list(releases))
            ended = write_finished(session, app, list(finished))
            fresh_before = at - timedelta(seconds=fresh_lag) if fresh_lag else None
            chosen = choose_due_runs(session, slots, at=at, fresh_before=fresh_before)
            turns = [_start_turn(app, row, at) for row in chosen]
            lease_runs(session, owner, [lease for _run, lease in turns], lease_seconds, at=at)
            cancels, next_due = _cancels_and_next_due(session, slots - len(turns),
                                                      lease_seconds, at)
            short = len(turns) + len(cancels) < slots
            result = Claim([run for run, _lease in turns], cancels, short,
                           next_due if short else None,
                           peek_deliveries and delivery_due(session, at), ended)
            session.commit()
            return result
        except Exception:
            session.rollback()
            raise
        finally:
            db.state(app).session.remove()


def _cancels_and_next_due(session: Session, left: int, lease_seconds: float,
                          at: datetime) -> tuple[list[str], datetime | None]:
    """With `left` slots free after the runs: lease due upstream cancels for them, and
    say when the next waiting run or cancel falls due. One statement when no cancel is
    due, the usual case (cancels are leased, and the times read again, only when one is)."""
    if left <= 0:
        return [], None
    next_poll, first_cancel = waiting_times(session, at)
    cancels = []
    if first_cancel is not None and first_cancel <= at:
        cancels = lease_due_cancels(session, left, lease_seconds, at=at)
        next_poll, first_cancel = waiting_times(session, at)
    return cancels, earliest(next_poll, first_cancel)


def earliest(*times):
    """The earliest of the times given (datetimes, or monotonic seconds), None if none is."""
    return min((value for value in times if value is not None), default=None)


def _start_turn(app: Flask, row, at: datetime) -> tuple[ClaimedRun, Lease]:
    """The run's snapshot for its turn, and its lease: a run that is to be started has
    its attempt counted and its adapter fixed (committed with the claim, before the
    provider is called; the adapter it starts with stays its adapter for polls and
    cancel, whatever the variables route to later)."""
    spec = state.catalog(app).get(row.model)
    refusal = _refusal(row, spec, at)
    attempts, adapter = row.attempts, row.adapter
    if refusal is None and row.upstream_id is None:
        attempts += 1
        adapter = adapter or effective_adapter(spec, app.config["PROVIDER_ENV"])
    run = ClaimedRun(row.id, row.user_id, row.model, row.input, row.deadline_at, attempts,
                     row.upstream_id, row.upstream_state, adapter, row.webhook_url, refusal,
                     row.callback_body, attempt_counted=attempts != row.attempts)
    return run, Lease(row.id, attempts, adapter)


def _refusal(run, spec: ModelSpec | None, at: datetime) -> tuple[str, str] | None:
    """Why a run must fail instead of calling its provider: past its deadline, out of
    attempts or no longer in the catalog; None when it may go on."""
    if spec is None:
        return f"Model '{run.model}' is no longer offered by this server.", "model_unavailable"
    if at >= run.deadline_at:
        return f"The run did not finish within its {spec.deadline_seconds} s deadline.", "timeout"
    if run.upstream_id is None and run.attempts >= spec.max_attempts:
        return f"The provider call was tried {run.attempts} times without an answer.", "provider_error"
    return None


def give_back_leases(session: Session, owner: str, *, never_started: list[str] = ()) -> list[str]:
    """Clear every lease `owner` holds on a run it has not finished and make the run due
    now, then commit; returns their ids. A worker that stops (SIGTERM) calls this last,
    so other workers take its runs at once instead of when the leases would have expired.
    Runs in `never_started` had an attempt counted by their claim but never called their
    provider: that attempt is taken back, so restarts cannot use up a run's attempts.

    Conditional on the owner and an active status: a run that ended meanwhile, or one
    that was never ours, is left alone. On PostgreSQL, listening workers are woken.
    """
    runs = Run.__table__
    if never_started:
        session.execute(update(runs).where(
            runs.c.id.in_(list(never_started)), runs.c.lease_owner == owner,
            is_active(runs.c.status), runs.c.upstream_id.is_(None), runs.c.attempts > 0)
            .values(attempts=runs.c.attempts - 1))
    given_back = list(session.scalars(
        update(runs).where(runs.c.lease_owner == owner, is_active(runs.c.status))
        .values(lease_owner=None, lease_until=None, next_check_at=utcnow())
        .returning(runs.c.id)))
    if given_back:
        notify_workers(session)
    session.commit()
    return given_back
