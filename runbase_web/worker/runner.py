"""The worker: a claim loop, a bounded thread pool, and a lease heartbeat.

The same class runs embedded in `python app.py` and standalone in
`flask --app app worker`. Sync provider calls occupy a pool thread; async runs
go back to the database between polls, so a few threads serve many runs.
Webhook deliveries have their own loop and pool (webhook_delivery.DeliveryLoop),
woken whenever a run this worker executed comes to rest.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from ..extensions import db
from .claim import claim_due, claim_due_cancels, renew_leases
from .execute import cancel_upstream_job, execute_run
from .listener import RunListener
from .webhook_delivery import DeliveryLoop

log = logging.getLogger(__name__)


class Worker:
    """Claims due runs and executes them on a thread pool until stopped."""

    #: Set by stop_claiming() (a graceful stop, worker/shutdown.py): claim nothing new.
    _draining = False

    def __init__(self, app: Flask, *, threads: int | None = None):
        self.app = app
        self.threads = threads or app.config["WORKER_THREADS"]
        self.lease_seconds = app.config["LEASE_SECONDS"]
        self.poll_seconds = app.config["WORKER_POLL_SECONDS"]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="runbase-run")
        self._active: set[str] = set()
        #: Ended runs whose upstream job this worker is asking the provider to stop.
        self._canceling: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.deliveries = DeliveryLoop(app, poll_seconds=self.poll_seconds)
        self._listener: RunListener | None = None

    def start(self) -> "Worker":
        """Start the claim loop and the heartbeat in background threads."""
        for target, name in ((self._loop, "runbase-claim"), (self._heartbeat, "runbase-lease")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.deliveries.start()
        engine = db.state(self.app).engine
        if engine.dialect.name == "postgresql":  # woken by NOTIFY on create; polling stays
            self._listener = RunListener(engine, self.wake).start()
        log.info("worker %s started with %d threads", self.owner, self.threads)
        return self

    def wake(self) -> None:
        """Look for due runs and webhook deliveries now instead of at the next poll."""
        self._wake.set()
        self.deliveries.wake()

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; with `wait`, let runs in progress reach their next resting point."""
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self.deliveries.stop(wait=wait)

    def active_runs(self) -> list[str]:
        """Ids of the runs this worker is executing right now."""
        with self._lock:
            return list(self._active)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Clear before claiming: a wake that lands during the claim is not lost.
            self._wake.clear()
            claimed = self._claim()
            for run_id in claimed:
                self._pool.submit(self._execute, run_id)
            for run_id in self._claim_cancels():
                self._pool.submit(self._cancel_upstream, run_id)
            if not claimed or self._free_slots() == 0:
                self._wake.wait(self.poll_seconds)

    def _free_slots(self) -> int:
        if self._draining:
            return 0
        with self._lock:
            return self.threads - len(self._active) - len(self._canceling)

    def _claim(self) -> list[str]:
        free = self._free_slots()
        if free <= 0:
            return []
        try:
            with self.app.app_context():
                ids = claim_due(db.session, self.owner, free, self.lease_seconds)
        except Exception:
            log.exception("worker %s: claiming failed; trying again shortly", self.owner)
            return []
        with self._lock:
            self._active.update(ids)
        return ids

    def _claim_cancels(self) -> list[str]:
        """Ended runs whose upstream job must be stopped, as many as there are free slots
        (each takes a slot while the provider answers)."""
        free = self._free_slots()
        if free <= 0:
            return []
        try:
            with self.app.app_context():
                ids = claim_due_cancels(db.session, free, self.lease_seconds)
        except Exception:
            log.exception("worker %s: claiming upstream cancels failed", self.owner)
            return []
        with self._lock:
            self._canceling.update(ids)
        return ids

    def _cancel_upstream(self, run_id: str) -> None:
        try:
            cancel_upstream_job(self.app, run_id)
        finally:
            with self._lock:
                self._canceling.discard(run_id)
            self._wake.set()

    def _execute(self, run_id: str) -> None:
        try:
            execute_run(self.app, run_id, self.owner)
        finally:
            with self._lock:
                self._active.discard(run_id)
            self._wake.set()
            # The run may have just ended and queued its webhook: send it without waiting.
            self.deliveries.wake()

    def _heartbeat(self) -> None:
        # Renew well inside the lease so one slow renewal never loses a live run.
        interval = self.lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                with self.app.app_context():
                    renew_leases(db.session, self.owner, self.active_runs(), self.lease_seconds)
            except Exception:
                log.exception("worker %s: lease renewal failed", self.owner)

    # --- graceful stop (worker/shutdown.py) ---------------------------------------------

    def stop_claiming(self) -> None:
        """Take no new runs or upstream cancels; those in progress go on, leases renewed."""
        self._draining = True

    def busy_slots(self) -> int:
        """Pool threads taken by runs and upstream cancels right now."""
        with self._lock:
            return len(self._active) + len(self._canceling)
