"""Waking workers on PostgreSQL: run creation sends NOTIFY on the `runbase_runs` channel
in its transaction (PostgreSQL delivers it only if that transaction commits), and each
worker process LISTENs on a connection of its own, so a standalone worker starts a new
run at once instead of at its next poll. Polling stays as the fallback: a lost
connection or a missed notification only delays a run until the next poll.

The first NOTIFY after a quiet spell wakes the worker at once; those that follow within
the gathering time are told in one wake-up. Every listening process hears every NOTIFY, and
at hundreds of creates a second a wake-up per NOTIFY per process (two thread switches
and a trip through the claim loop each) cost more CPU with each worker added than the
added worker brought.

One listening worker is the first responder: the one whose listening connection holds
a PostgreSQL advisory lock (its session's: it goes with the connection, so a worker that
stops or dies hands it on, and another listener takes it within WAIT_SECONDS). The
worker uses it to decide how soon to start new runs (runner.HELPER_LAG_SECONDS).

A worker behind the first responder takes a new run only once it has waited that lag,
so it needs to hear of new runs once per lag, not of each: after a NOTIFY its listener
stops listening (UNLISTEN) for the lag, and PostgreSQL stops sending it every create.
Runs created meanwhile are covered by one more look when it listens again, so a run
the first responder leaves waits up to twice the lag for a helper. Beside a busy first
responder (bench/scale.py, 0 ms provider) an idle helper used 0.01 core instead of
0.02, and PostgreSQL no longer delivers each create once per worker.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg
from sqlalchemy import Engine

from ..services.run_creation import WAKE_CHANNEL

log = logging.getLogger(__name__)
#: How long one wait for notifications lasts before the stop flag is looked at again.
WAIT_SECONDS = 1.0
#: Pause before reconnecting after the listening connection failed.
RECONNECT_SECONDS = 2.0
#: The advisory lock whose holder is the first responder ("Runbase" in ASCII). Advisory
#: locks are per database, so deployments sharing a server do not meet.
FIRST_RESPONDER_LOCK = 0x52756E62617365


def conninfo(engine: Engine) -> str:
    """A libpq connection string for the engine's database (psycopg, not SQLAlchemy)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class RunListener:
    """A thread that calls `wake()` whenever a run is created anywhere; PostgreSQL only."""

    def __init__(self, engine: Engine, wake: Callable[[], None], *, gather_seconds: float = 0.0,
                 deaf_seconds: Callable[[], float] | None = None):
        self._conninfo = conninfo(engine)
        self._wake = wake
        self._gather_seconds = gather_seconds
        #: After a wake-up, how long the worker can do without hearing of new runs (its
        #: lag behind the first responder); asked at each wake-up, as it changes.
        self._deaf_seconds = deaf_seconds or (lambda: 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runbase-listen", daemon=True)
        #: Whether this listener's connection holds the first responder's lock: None until
        #: it has asked, and again once its connection is lost (the lock went with it).
        self._leads: bool | None = None

    @property
    def first_responder(self) -> bool:
        """This listener's connection holds the first responder's lock."""
        return self._leads is True

    @property
    def behind_another(self) -> bool:
        """This listener asked for the lock and another listener holds it. False while
        that is not known (before it asked, or with its connection lost): a worker that
        cannot tell whether another one answers first does not leave new runs to it."""
        return self._leads is False

    def start(self) -> "RunListener":
        """Start listening in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; returns once the thread has closed its connection."""
        self._stop.set()
        self._thread.join(timeout=WAIT_SECONDS * 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as error:
                log.warning("listening for new runs failed (%s); polling meanwhile",
                            type(error).__name__)
                self._stop.wait(RECONNECT_SECONDS)

    def _listen(self) -> None:
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as connection:
                connection.execute(f"LISTEN {WAKE_CHANNEL}")
                self._try_to_lead(connection)
                # Runs created while this connection was being opened were not heard: look.
                self._wake()
                tried = time.monotonic()
                while not self._stop.is_set():
                    if _drain(connection, timeout=WAIT_SECONDS):
                        self._wake()
                        self._rest(connection)
                    if not self.first_responder and time.monotonic() - tried >= WAIT_SECONDS:
                        # A NOTIFY that arrives during this statement is kept by psycopg
                        # (3.3) for the next _drain, not lost.
                        self._try_to_lead(connection)
                        tried = time.monotonic()
        finally:
            self._leads = None  # the lock went with the connection

    def _rest(self, connection: psycopg.Connection) -> None:
        """After a wake-up, gather: what arrives meanwhile waits in the connection's
        buffer, and the next _drain takes all of it at once. A worker that can do without
        hearing for longer than that stops listening meanwhile instead, then looks once
        more for the runs created while it did not listen."""
        deaf = self._deaf_seconds()
        if deaf <= self._gather_seconds:
            self._stop.wait(self._gather_seconds)
            return
        connection.execute(f"UNLISTEN {WAKE_CHANNEL}")
        self._stop.wait(deaf)
        if self._stop.is_set():
            return
        connection.execute(f"LISTEN {WAKE_CHANNEL}")
        # Sent before the UNLISTEN took effect, or just now: the look below covers them
        # (it takes runs created before it), so they need no wake-up of their own.
        _drain(connection, timeout=0)
        self._wake()

    def _try_to_lead(self, connection: psycopg.Connection) -> None:
        """Become the first responder if no other listener is (the lock is free)."""
        self._leads = bool(connection.execute(
            "SELECT pg_try_advisory_lock(%s)", (FIRST_RESPONDER_LOCK,)).fetchone()[0])


def _drain(connection: psycopg.Connection, *, timeout: float) -> bool:
    """Wait up to `timeout` s for a notification; True if any came, with every one
    already received consumed (each means only "look for due runs")."""
    if not any(True for _ in connection.notifies(timeout=timeout)):
        return False
    for _ in connection.notifies(timeout=0):
        pass
    return True
