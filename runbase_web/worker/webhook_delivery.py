"""Delivering webhook messages: one signed POST per attempt, retried with backoff for 24 h.

Policy (README, "Webhooks"; Standard Webhooks' sender advice):

* a 2xx answer delivers the message; anything else (3xx included: redirects are not
  followed) is retried on `RETRY_SCHEDULE`, with jitter so that receivers coming back
  from an outage are not hit by every sender in the same second;
* retries stop `RETRY_WINDOW` after the first attempt, with one last attempt at its end;
* 410 Gone means "stop sending": the delivery fails at once;
* a URL the outbound guard refuses (private, loopback or metadata address, internal
  name, odd port) fails at once too. Retrying would only keep probing an internal
  target for a day, and the guard's verdict is logged on the attempt so the owner
  can fix the URL or DNS and press Resend.

The HTTP call happens with no database transaction open. Each attempt is logged as
a WebhookAttempt. The outcome is written only by the holder of the claim's lease
(its lease_until value is the token), so a worker that stalled past its lease and
woke up again cannot overwrite what the next claimer did.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import net
from ..extensions import db
from ..models import WebhookAttempt, WebhookDelivery, utcnow
from ..services import webhooks
from ..services.webhooks import DeliveryStatus
from .claim import claim_due_deliveries

log = logging.getLogger(__name__)

#: Seconds to wait after the 1st, 2nd, ... failed attempt; the last value repeats.
#: Read at call time, so tests may monkeypatch it to tiny values.
RETRY_SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
#: Automatic retries end this long after the first attempt.
RETRY_WINDOW = timedelta(hours=24)
#: Each wait is the schedule's value times a random factor in this range.
JITTER = (0.8, 1.2)
#: Standard Webhooks asks receivers to answer within 15-30 s.
ATTEMPT_TIMEOUT = 15.0
#: Longer than one attempt can take, so a live attempt never loses its claim.
LEASE_SECONDS = 60.0
#: Parallel POSTs per worker: a slow receiver must not hold up the others.
DELIVERY_THREADS = 4
#: Deliveries this process did not queue (another process's cancel or resend, or queued
#: before a restart) are looked for this often; those it queued are claimed at once.
SWEEP_SECONDS = 5.0


@dataclass(frozen=True)
class Message:
    """What one attempt sends, read in a short transaction before the POST."""

    id: str
    url: str
    body: bytes
    secret: str


@dataclass(frozen=True)
class Outcome:
    """What one attempt got back."""

    status_code: int | None
    error: str | None
    duration_ms: int
    #: No retry can help (410 Gone, a URL the guard refuses).
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        """A 2xx came back."""
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(failed_attempts: int) -> float:
    """Seconds before the next try after `failed_attempts` failures, with jitter."""
    schedule = RETRY_SCHEDULE
    base = schedule[min(max(failed_attempts, 1), len(schedule)) - 1]
    return base * random.uniform(*JITTER)


def attempt(app: Flask, delivery_id: str, lease_until: datetime, *,
            now: datetime | None = None) -> datetime | None:
    """POST one claimed delivery once and record the outcome; never raises. Returns when
    the delivery is to be tried again, or None (delivered, given up, or not ours)."""
    with app.app_context():
        session = db.session
        try:
            message = _prepare(session, delivery_id, lease_until)
            if message is None:
                return None
            at = now or utcnow()
            outcome = _post(app, message)
            retry_at = _record(session, message, outcome, lease_until, at)
            session.commit()
            return retry_at
        except Exception:
            session.rollback()
            log.exception("webhook %s: unexpected error; the lease expiry retries it", delivery_id)
            return None
        finally:
            db.state(app).session.remove()


def _prepare(session: Session, delivery_id: str, lease_until: datetime) -> Message | None:
    """The message to send, if this claim still holds it; commits (secret creation)."""
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    if (delivery is None or delivery.status != DeliveryStatus.PENDING
            or delivery.lease_until != lease_until):
        session.rollback()
        return None
    secret = webhooks.ensure_secret(session, delivery.user_id)
    message = Message(delivery.id, delivery.url, delivery.payload.encode("utf-8"), secret)
    session.commit()
    return message


def _post(app: Flask, message: Message) -> Outcome:
    """One signed POST through the guarded fetcher."""
    fetcher = net.Fetcher(allow_loopback=app.config.get("FETCH_ALLOW_LOOPBACK", False),
                          timeout=ATTEMPT_TIMEOUT, max_redirects=0)
    headers = webhooks.signed_headers(message.secret, message.id, int(time.time()), message.body)
    started = time.monotonic()
    try:
        status, _answer = fetcher.post(message.url, body=message.body, headers=headers)
    except net.FetchError as error:
        blocked = error.code == "url_blocked"
        log.info("webhook %s to %s: %s", message.id, net.host_of(message.url), error.message)
        return Outcome(None, ("Refused by the outbound guard: " if blocked else "") + error.message,
                       _elapsed_ms(started), permanent=blocked)
    log.info("webhook %s to %s: HTTP %d", message.id, net.host_of(message.url), status)
    gone = status == 410
    return Outcome(status, "The receiver answered 410 Gone: no more retries." if gone else None,
                   _elapsed_ms(started), permanent=gone)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _record(session: Session, message: Message, outcome: Outcome, lease_until: datetime,
            at: datetime) -> datetime | None:
    """Log the attempt, then move the delivery on: delivered, failed, or due again (then
    returns when)."""
    session.add(WebhookAttempt(delivery_id=message.id, attempted_at=at,
                               status_code=outcome.status_code, error=outcome.error,
                               duration_ms=outcome.duration_ms))
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == message.id)
                    .values(attempts=WebhookDelivery.attempts + 1))
    session.flush()
    next_state = _next_state(session, message.id, outcome, at)
    changed = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == message.id, WebhookDelivery.lease_until == lease_until,
               WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(lease_until=None, **next_state))
    if changed.rowcount != 1:
        log.warning("webhook %s: the claim expired during the attempt; outcome only logged",
                    message.id)
        return None
    return None if "status" in next_state else next_state["next_attempt_at"]


def _next_state(session: Session, delivery_id: str, outcome: Outcome, at: datetime) -> dict:
    if outcome.delivered:
        return {"status": DeliveryStatus.DELIVERED, "delivered_at": at, "next_attempt_at": None}
    first = session.scalar(select(func.min(WebhookAttempt.attempted_at))
                           .where(WebhookAttempt.delivery_id == delivery_id)) or at
    closes = first + RETRY_WINDOW
    if outcome.permanent or at >= closes:
        return {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    failures = session.scalar(select(WebhookDelivery.attempts)
                              .where(WebhookDelivery.id == delivery_id))
    wait = timedelta(seconds=retry_delay(failures))
    return {"next_attempt_at": min(at + wait, closes)}


class DeliveryLoop:
    """Claims due deliveries and POSTs them on a small pool of its own, so receivers,
    slow or not, never take a thread a run needs.

    It runs a claim transaction only when a delivery can be due: one this process
    queued (a run it ended, told through `wake`), a retry whose time has come (each
    attempt says when), a claim that filled every free thread (more may wait), and, for
    deliveries queued by other processes or before a restart, a sweep every
    `sweep_seconds`.
    """

    def __init__(self, app: Flask, *, poll_seconds: float, threads: int = DELIVERY_THREADS,
                 sweep_seconds: float | None = None):
        self.app = app
        self.poll_seconds = poll_seconds
        self.sweep_seconds = sweep_seconds or max(SWEEP_SECONDS, poll_seconds)
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="runbase-webhook")
        self._in_flight = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Under _lock; times are time.monotonic(). The first turn sweeps (a restart).
        self._due: float | None = None
        self._next_sweep = 0.0

    def start(self) -> "DeliveryLoop":
        """Start claiming in a background thread."""
        self._thread = threading.Thread(target=self._loop, name="runbase-webhooks", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A delivery may be due now (a run with a webhook has just ended, or one was
        queued or resent): claim at once."""
        self.expect(time.monotonic())

    def expect(self, at: float) -> None:
        """A delivery falls due at `at` (time.monotonic()): claim then."""
        with self._lock:
            self._due = at if self._due is None else min(self._due, at)
        self._wake.set()

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; with `wait`, let attempts in progress finish and be recorded."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            free = self._slots_to_claim()
            if free:
                for delivery_id, lease_until in self._claim(free):
                    self._pool.submit(self._attempt, delivery_id, lease_until)
            self._wake.wait(self._seconds_to_wait())

    def _slots_to_claim(self) -> int:
        """Free threads, if a delivery can be due now; else 0 (and no transaction)."""
        now = time.monotonic()
        with self._lock:
            free = self.threads - self._in_flight
            due = (self._due is not None and self._due <= now) or now >= self._next_sweep
            if free <= 0 or not due:
                return 0
            self._due, self._next_sweep = None, now + self.sweep_seconds
            return free

    def _seconds_to_wait(self) -> float:
        now = time.monotonic()
        with self._lock:
            until = self._next_sweep
            if self._due is not None and self._in_flight < self.threads:
                until = min(until, self._due)  # with every thread busy, a finish wakes us
        return max(until - now, 0.0)

    def _claim(self, free: int) -> list[tuple[str, datetime]]:
        try:
            with self.app.app_context():
                claimed = claim_due_deliveries(db.session, free, LEASE_SECONDS)
        except Exception:
            log.exception("webhook claiming failed; trying again shortly")
            self.expect(time.monotonic() + self.poll_seconds)
            return []
        with self._lock:
            self._in_flight += len(claimed)
        if len(claimed) == free:
            self.expect(time.monotonic())  # more may be due: claim when a thread frees up
        return claimed

    def _attempt(self, delivery_id: str, lease_until: datetime) -> None:
        retry_at = None
        try:
            retry_at = attempt(self.app, delivery_id, lease_until)
        finally:
            with self._lock:
                self._in_flight -= 1
            if retry_at is not None:
                self.expect(time.monotonic() + max((retry_at - utcnow()).total_seconds(), 0.0))
            self._wake.set()
