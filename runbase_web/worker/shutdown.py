"""Stopping a worker gracefully (SIGTERM from an orchestrator, Ctrl+C).

The sequence: claim nothing new; let provider calls in progress finish for up to the
grace period (RUNBASE_SHUTDOWN_GRACE_SECONDS), leases still renewed; stop the loops;
give back the leases of runs not finished, due at once, so another worker takes them
now rather than when the leases would have expired; exit 0.

Calls still in progress after the grace period are abandoned, not waited for: the
process ends with os._exit, because the interpreter would otherwise join the pool's
threads (each in a provider call that may take minutes). A late answer could never be
recorded twice anyway: ending a run is conditional on it still being active.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Callable

from ..extensions import db
from .claim import give_back_leases
from .runner import Worker

log = logging.getLogger(__name__)
#: How often the grace-period wait looks at the worker's busy slots.
_WAIT_STEP_SECONDS = 0.05


def drain(worker: Worker, grace_seconds: float) -> list[str]:
    """Stop `worker` gracefully; returns the ids of the runs given back to other workers."""
    worker.stop_claiming()
    deadline = time.monotonic() + grace_seconds
    busy = worker.busy_slots()
    if busy:
        log.info("worker %s stopping: waiting up to %.0f s for %d call(s) in progress",
                 worker.owner, grace_seconds, busy)
    while worker.busy_slots() and time.monotonic() < deadline:
        time.sleep(_WAIT_STEP_SECONDS)
    worker.stop(wait=False)
    try:
        with worker.app.app_context():
            given_back = give_back_leases(db.session, worker.owner,
                                          never_started=worker.never_started())
    except Exception:  # noqa: BLE001 - e.g. the database is down: still stop
        log.exception("worker %s: could not give back its leases; they expire within "
                      "RUNBASE_LEASE_SECONDS and other workers take the runs then", worker.owner)
        return []
    if given_back:
        log.warning("worker %s stopped; gave back %d unfinished run(s): %s",
                    worker.owner, len(given_back), ", ".join(given_back))
    else:
        log.info("worker %s stopped; nothing left unfinished", worker.owner)
    return given_back


def on_stop_signals(first: Callable[[], None]) -> None:
    """SIGTERM or SIGINT calls `first()` once; a second signal exits at once (code 1),
    for an operator who will not wait out the grace period (the runs' leases then expire
    as after a crash)."""
    received: list[int] = []

    def handle(signum, _frame):
        if received:
            exit_now(1)
        received.append(signum)
        first()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)


def exit_now(code: int = 0) -> None:
    """End the process without joining abandoned threads, after flushing what was logged."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
