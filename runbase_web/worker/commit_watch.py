"""Waking standalone workers on SQLite, which has no NOTIFY.

A standalone worker (`flask --app app worker`) runs in a process of its own, so the web
process's in-process wake-up cannot reach it, and without one it started a new run only
at its next poll: up to RUNBASE_WORKER_POLL_SECONDS late (half a second by default),
every time a burst of runs followed a quiet spell. SQLite tells a connection whether
any other connection has committed a change since it last asked (`PRAGMA data_version`,
a read of the WAL index in shared memory, about 3 µs), so the worker asks every
WATCH_SECONDS and looks for due runs when the answer changes. The watch costs about
0.4 % of a core, busy or idle (measured alone at 20 ms; 0.2 % at 100 ms, 0.6 % at 5 ms),
and nothing of it reaches the disk.

Every commit that changes the database counts, not only creates: the worker's own
writes, a sign-in, a key's use. A look that finds nothing due is one short claim
transaction, and the claim loop gathers looks NOTIFY_GATHER_SECONDS apart, so a busy
database costs at most one extra claim per gathering. Polling stays as the fallback.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import urllib.parse
from typing import Callable

from sqlalchemy import Engine

log = logging.getLogger(__name__)
#: How often the database is asked whether another connection committed.
WATCH_SECONDS = 0.02
#: Pause before opening the watching connection again after it failed.
REOPEN_SECONDS = 2.0


def database_file(engine: Engine) -> str | None:
    """The SQLite database file behind `engine`, or None (not SQLite, or in memory: no
    other process can write to it)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None  # in memory, or a URI (which may name memory): nothing to watch
    return path


class CommitWatcher:
    """A thread that calls `wake()` whenever another connection commits a change to the
    SQLite database file at `path`."""

    def __init__(self, path: str, wake: Callable[[], None], *,
                 interval: float = WATCH_SECONDS):
        self._path = path
        self._wake = wake
        self._interval = interval
        self._stop = threading.Event()
        #: Set once the watcher has its first answer: commits after that wake the worker.
        self.watching = threading.Event()
        self._connection: sqlite3.Connection | None = None
        self._version: int | None = None  # the last answer; None: nothing to compare with
        self._missed = False  # the connection failed: commits meanwhile went unseen
        self._thread = threading.Thread(target=self._run, name="runbase-watch", daemon=True)

    def start(self) -> "CommitWatcher":
        """Take the first answer, then watch in the background: a commit made after this
        returns wakes the worker, however long the thread takes to get going on a busy
        machine. If the database cannot be opened now, the thread keeps trying."""
        self._look()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and close the connection."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        pause = self._interval if self.watching.is_set() else REOPEN_SECONDS
        while not self._stop.wait(pause):
            pause = self._interval if self._look() else REOPEN_SECONDS
        self._connection = _close(self._connection)

    def _look(self) -> bool:
        """Ask once, and wake the worker if the answer changed; False if asking failed."""
        try:
            self._connection = self._connection or _open(self._path)
            latest = _data_version(self._connection)
        except sqlite3.Error as error:
            log.warning("watching %s for commits failed (%s); polling meanwhile",
                        self._path, error)
            self._connection = _close(self._connection)
            self._version, self._missed = None, True
            return False
        # A connection's first answer says nothing about what came before it: at start
        # the worker claims anyway; after a failure it must look.
        if self._missed or (self._version is not None and latest != self._version):
            self._wake()
        self._version, self._missed = latest, False
        self.watching.set()
        return True


def _open(path: str) -> sqlite3.Connection:
    """A connection to an existing database file (never one created here by mistake). It
    is opened by the thread calling start() and then used only by the watching thread."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=rw"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _data_version(connection: sqlite3.Connection) -> int:
    """A number that changes whenever another connection commits a change."""
    return connection.execute("PRAGMA data_version").fetchone()[0]


def _close(connection: sqlite3.Connection | None) -> None:
    """Close the watching connection, if open; None, for the caller's variable."""
    if connection is not None:
        connection.close()
