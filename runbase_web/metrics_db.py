"""Prometheus metrics computed from the database at scrape time.

Runs created, succeeded and failed, money charged and refunded, webhook deliveries,
the queue's depth and the age of its oldest due run are all recorded in the database
already. Reading them there at scrape time (a few aggregate queries) makes the numbers
the same whichever web process answers and whichever worker did the work, survives
restarts, and needs no instrumentation in the code that ends runs. Ended runs never
change, so their counts only grow, as Prometheus counters must.

The queries scan the runs table, so a scrape costs time proportional to its size: scrape
every 15 to 60 s, not every second (README, "Health, metrics and logs").
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from .extensions import begin_reading_only, end_reading_only
from .models import ACTIVE_STATUSES, EntryKind, LedgerEntry, Run, RunStatus, utcnow
from .models import WebhookAttempt, WebhookDelivery

#: Created → ended: from an instant local sketch to a long video job.
DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
#: Created → first started: how long runs wait for a worker.
QUEUE_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
_ENDED = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value)
_runs = Run.__table__


def seconds_between(dialect: str, later: ColumnElement, earlier: ColumnElement) -> ColumnElement:
    """SQL for the seconds from `earlier` to `later` (both UTC timestamps)."""
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


class DatabaseCollector(Collector):
    """Reads every database-derived metric in one read-only connection per scrape."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterable:
        # Read-only: on SQLite a scrape never waits for the write lock behind a writer.
        token = begin_reading_only()
        try:
            with self.engine.connect() as connection:
                families = [*_run_counts(connection), _oldest_due_age(connection),
                            *_histograms(connection), *_money(connection),
                            *_webhooks(connection)]
        finally:
            end_reading_only(token)
        return families


def database_exposition(engine: Engine) -> bytes:
    """The database-derived metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine))
    return generate_latest(registry)


def _run_counts(connection: Connection) -> list:
    created = CounterMetricFamily("runbase_runs_created", "Runs created, by model.",
                                  labels=["model"])
    succeeded = CounterMetricFamily("runbase_runs_succeeded", "Runs that succeeded, by model "
                                    "and the adapter that ran them.", labels=["model", "adapter"])
    failed = CounterMetricFamily("runbase_runs_failed", "Runs that failed (and were refunded), "
                                 "by model, adapter (none: never started) and errorCode.",
                                 labels=["model", "adapter", "error_code"])
    active = GaugeMetricFamily("runbase_runs_active", "Runs pending or processing now.",
                               labels=["model", "status"])
    rows = connection.execute(
        select(_runs.c.model, _runs.c.adapter, _runs.c.status, _runs.c.error_code, func.count())
        .group_by(_runs.c.model, _runs.c.adapter, _runs.c.status, _runs.c.error_code)).all()
    by_model: dict[str, int] = {}
    for model, adapter, status, error_code, count in rows:
        by_model[model] = by_model.get(model, 0) + count
        if status == RunStatus.SUCCEEDED.value:
            succeeded.add_metric([model, adapter or "none"], count)
        elif status == RunStatus.FAILED.value:
            failed.add_metric([model, adapter or "none", error_code or "none"], count)
        else:
            active.add_metric([model, status], count)
    for model, count in sorted(by_model.items()):
        created.add_metric([model], count)
    return [created, succeeded, failed, active]


def _oldest_due_age(connection: Connection) -> GaugeMetricFamily:
    """How long the oldest run that a worker could take right now has been waiting (0 when
    none): grows when workers are missing or saturated."""
    at = utcnow()
    due_since = func.min(func.coalesce(_runs.c.next_check_at, _runs.c.created_at))
    oldest: datetime | None = connection.execute(
        select(due_since.label("due_since")).where(
            _runs.c.status.in_(ACTIVE_STATUSES),
            or_(_runs.c.lease_until.is_(None), _runs.c.lease_until < at),
            or_(_runs.c.next_check_at.is_(None), _runs.c.next_check_at <= at))).scalar()
    if isinstance(oldest, str):  # SQLite's min() of text loses the column type
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=at.tzinfo)
    gauge = GaugeMetricFamily("runbase_oldest_due_run_age_seconds",
                              "Seconds the oldest run a worker could start now has been due.")
    gauge.add_metric([], max((at - oldest).total_seconds(), 0.0) if oldest else 0.0)
    return gauge


def _histogram(connection: Connection, family: HistogramMetricFamily, seconds: ColumnElement,
               buckets: tuple, group: list, where: list) -> HistogramMetricFamily:
    """Fill `family` with cumulative bucket counts of `seconds`, one series per group."""
    bounds = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in buckets]
    rows = connection.execute(select(*group, func.count(), func.sum(seconds), *bounds)
                              .where(*where).group_by(*group)).all()
    for row in rows:
        labels, count, total = list(row[:len(group)]), row[len(group)], row[len(group) + 1]
        counts = row[len(group) + 2:]
        family.add_metric(labels, [(_le(bound), int(n or 0)) for bound, n in zip(buckets, counts)]
                          + [("+Inf", count)], float(total or 0.0))
    return family


def _le(bound: float) -> str:
    return str(float(bound))


def _histograms(connection: Connection) -> list:
    dialect = connection.dialect.name
    duration = HistogramMetricFamily(
        "runbase_run_duration_seconds", "Ended runs, created to ended, by model and status.",
        labels=["model", "status"])
    wait = HistogramMetricFamily(
        "runbase_run_queue_wait_seconds", "Started runs, created to first started, by model.",
        labels=["model"])
    _histogram(connection, duration,
               seconds_between(dialect, _runs.c.completed_at, _runs.c.created_at),
               DURATION_BUCKETS, [_runs.c.model, _runs.c.status],
               [_runs.c.status.in_(_ENDED), _runs.c.completed_at.is_not(None)])
    _histogram(connection, wait, seconds_between(dialect, _runs.c.started_at, _runs.c.created_at),
               QUEUE_WAIT_BUCKETS, [_runs.c.model], [_runs.c.started_at.is_not(None)])
    return [duration, wait]


def _money(connection: Connection) -> list:
    entries = LedgerEntry.__table__
    sums = dict(connection.execute(
        select(entries.c.kind, func.sum(entries.c.amount_micros))
        .where(entries.c.kind.in_((EntryKind.CHARGE.value, EntryKind.REFUND.value)))
        .group_by(entries.c.kind)).all())
    charged = CounterMetricFamily("runbase_charged_micros", "Micro-USD charged for runs.")
    charged.add_metric([], -int(sums.get(EntryKind.CHARGE.value) or 0))
    refunded = CounterMetricFamily("runbase_refunded_micros", "Micro-USD refunded for failed runs.")
    refunded.add_metric([], int(sums.get(EntryKind.REFUND.value) or 0))
    return [charged, refunded]


def _webhooks(connection: Connection) -> list:
    deliveries = WebhookDelivery.__table__
    attempts = WebhookAttempt.__table__
    by_status = dict(connection.execute(select(deliveries.c.status, func.count())
                                        .group_by(deliveries.c.status)).all())
    ended = CounterMetricFamily("runbase_webhook_deliveries", "Webhook messages that reached "
                                "an end: delivered (a 2xx came back) or failed (gave up).",
                                labels=["outcome"])
    for outcome in ("delivered", "failed"):
        ended.add_metric([outcome], by_status.get(outcome, 0))
    pending = GaugeMetricFamily("runbase_webhook_deliveries_pending",
                                "Webhook messages still being tried.")
    pending.add_metric([], by_status.get("pending", 0))
    code = attempts.c.status_code
    outcome = case((code.is_(None), "no_answer"), ((code >= 200) & (code < 300), "success"),
                   else_="http_error")
    tried = CounterMetricFamily("runbase_webhook_attempts", "Webhook HTTP attempts by outcome: "
                                "success (2xx), http_error, no_answer (refused, timeout, blocked).",
                                labels=["outcome"])
    counts = dict(connection.execute(select(outcome, func.count()).group_by(outcome)).all())
    for name in ("success", "http_error", "no_answer"):
        tried.add_metric([name], counts.get(name, 0))
    return [ended, pending, tried]
