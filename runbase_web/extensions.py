"""Extensions, created unbound and attached to an app in create_app()."""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Callable, Iterator, TypeVar

from flask import Flask, current_app, request
from flask_login import LoginManager
from flask_wtf import CSRFProtect
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.pool import QueuePool

from .write_group import WriteGroup, WriteGroupFailed

T = TypeVar("T")


class Database:
    """One engine and one thread-scoped session per app.

    Kept per app (in `app.extensions`) rather than module-global so that tests and
    tools can hold several apps with different databases in one process.
    """

    key = "runbase.db"

    def init_app(self, app: Flask) -> None:
        """Create the engine and session registry for `app` and tidy sessions per request."""
        engine = make_engine(app.config["DATABASE_URL"])
        factory = sessionmaker(engine, expire_on_commit=False)
        state = app.extensions[self.key] = _AppDatabase(engine, factory, scoped_session(factory))
        held = weakref.ref(state)  # the hook must not keep a finished app alive
        os.register_at_fork(after_in_child=lambda: held() and held().after_fork())
        app.teardown_appcontext(lambda _exc: app.extensions[self.key].end_context())
        app.before_request(_declare_reads)
        app.teardown_request(_end_reads)

    def state(self, app: Flask | None = None) -> "_AppDatabase":
        """The engine and session registry of `app` (default: the current app)."""
        return (app or current_app).extensions[self.key]

    @property
    def session(self) -> Session:
        """The current thread's session for the current app."""
        return self.state().session()

    @property
    def connection(self) -> Connection:
        """The current thread's Core connection for the current app, returned to the pool
        at the end of the app context: for paths that run only Core statements (a GET of
        the API), which then skip the ORM session's bookkeeping."""
        return self.state().connection()

    @property
    def engine(self) -> Engine:
        """The current app's engine."""
        return self.state().engine

    def write_group(self) -> WriteGroup | None:
        """The current app's group commit for short concurrent writes (write_group.py):
        on SQLite, where writers queue for one lock; None on PostgreSQL."""
        return self.state().write_group


#: Seconds a client is asked to wait when the database is out of reach.
OUTAGE_RETRY_AFTER = 2


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database is out of reach (down, restarting, connection
    dropped, pool exhausted, locked) rather than that the request or the code is wrong."""
    if isinstance(error, SqlTimeoutError):
        return True
    if isinstance(error, WriteGroupFailed) and error.__cause__ is not None:
        return is_outage(error.__cause__)  # another thread's commit, failing for all
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError))
    return False


def rollback_quietly() -> None:
    """Roll back the current session; a connection that is already dead is simply dropped
    (an error answer must not turn into a crash because the database went away)."""
    try:
        db.session.rollback()
    except DBAPIError:
        log.warning("rollback failed; the connection is discarded", exc_info=True)
        remove_session(db.state().session)


def remove_session(registry: scoped_session) -> None:
    """End the request's session without letting a dead connection spoil the answer.

    Closing rolls back; when the database went away mid-request (a restart, a failover)
    that ROLLBACK fails, and raising here would replace an answer that was already made,
    sometimes for work that had committed, with the server's bare HTML 500.
    """
    try:
        registry.remove()
    except DBAPIError:
        log.warning("closing a database session failed; its connection is discarded",
                    exc_info=True)
        registry.registry.clear()


#: A thread keeps its read connection between requests for at most this long, then gives
#: it back to the pool and takes another, so kept connections are recycled too.
KEPT_CONNECTION_SECONDS = 300.0
#: The kept connections of processes this one was forked from: never used, closed or
#: collected here (closing or collecting would reset them over a socket the parent
#: still uses); see _AppDatabase.after_fork.
_INHERITED: list = []


class _KeptConnection:
    """A thread's Core connection for reads, kept checked out from one request to the
    next: giving it back to the pool and taking it out again cost a tenth of a cached
    GET on PostgreSQL (the pool's checkout, reset and checkin bookkeeping). It goes back
    to the pool when its thread ends (this object goes with the thread's local storage),
    when it is older than KEPT_CONNECTION_SECONDS, when it failed, and when the app's
    database is disposed."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self.since = time.monotonic()

    def alive(self) -> bool:
        """Whether it can still be used (not failed, not closed)."""
        return not self.connection.invalidated and not self.connection.closed

    def end_use(self) -> bool:
        """End what the request left open (reads run in autocommit, so nothing is sent);
        False if the connection is not to be kept: it failed, or is due for recycling."""
        if not self.alive() or time.monotonic() - self.since >= KEPT_CONNECTION_SECONDS:
            return False
        try:
            self.connection.rollback()
        except DBAPIError:
            return False
        return True

    def close(self) -> None:
        """Give the connection back to the pool (a dead one is discarded)."""
        try:
            self.connection.close()
        except DBAPIError:
            log.warning("closing a database connection failed; it is discarded",
                        exc_info=True)

    def __del__(self):
        # Its thread ended. Errors cannot propagate from here, and at interpreter exit
        # the pool may already be gone.
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class _AppDatabase:
    def __init__(self, engine: Engine, factory: sessionmaker, session: scoped_session):
        self.engine = engine
        self.factory = factory
        self.session = session
        self._connections = threading.local()
        self._kept: weakref.WeakSet[_KeptConnection] = weakref.WeakSet()
        self._kept_lock = threading.Lock()
        self.write_group = WriteGroup(engine) if engine.dialect.name == "sqlite" else None

    def connection(self) -> Connection:
        """This thread's Core connection: the one it kept from its last request if still
        usable, else one checked out from the pool."""
        kept = getattr(self._connections, "current", None)
        if kept is not None and not kept.alive():
            self._forget(kept)
            kept = None
        if kept is None:
            kept = self._connections.current = _KeptConnection(self.engine.connect())
            with self._kept_lock:
                self._kept.add(kept)
        return kept.connection

    def end_context(self) -> None:
        """Give back what this thread's context used: the session, and the connection
        unless the thread may keep it for its next request (see _KeptConnection).
        Closing either rolls back anything left uncommitted."""
        remove_session(self.session)
        kept = getattr(self._connections, "current", None)
        if kept is not None and not kept.end_use():
            self._forget(kept)

    def _forget(self, kept: _KeptConnection) -> None:
        self._connections.current = None
        with self._kept_lock:
            self._kept.discard(kept)
        kept.close()

    def dispose(self) -> None:
        """Give back every thread's kept connection and close the pool's connections (an
        app that is done with its database: tests, tools)."""
        with self._kept_lock:
            kept, self._kept = list(self._kept), weakref.WeakSet()
        for connection in kept:
            connection.close()
        self._connections = threading.local()
        self.engine.dispose()

    def after_fork(self) -> None:
        """In a forked child: start with no kept connection. The parent's stay referenced
        (in _INHERITED) so that nothing here resets or closes them."""
        _INHERITED.append((self._connections, self._kept))
        self._connections = threading.local()
        self._kept = weakref.WeakSet()
        self._kept_lock = threading.Lock()
        if self.write_group is not None:
            self.write_group.after_fork()


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: pooled connections; on SQLite, WAL and write
    transactions that take the write lock up front (reads don't: see reads_only)."""
    engine = _sqlite_engine(url) if url.startswith("sqlite") else _postgres_engine(url)
    event.listen(engine, "before_cursor_execute", _watch_statement)
    # A pooled connection must never be shared by a forked child (gunicorn --preload,
    # multiprocessing): the child starts with an empty pool of its own.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    return engine


def _postgres_engine(url: str) -> Engine:
    # Enough connections for a burst of concurrent creates; the rest queue in the pool.
    # No pre-ping (a round trip on every checkout): connections are recycled after half an
    # hour, and a request that meets a connection the server dropped is retried once
    # (see retry_on_disconnect) when it had not written yet.
    engine = create_engine(url, pool_size=10, max_overflow=30, pool_timeout=60,
                           pool_recycle=1800)

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A context that only reads runs its statements in autocommit: psycopg then sends
        # no BEGIN before the first one and no ROLLBACK at the end, so a GET is one round
        # trip instead of three. Under READ COMMITTED each statement takes a fresh snapshot
        # inside a transaction too, so reads see exactly what they would have seen.
        # Switching is a local flag on an idle connection, not a round trip.
        dbapi_connection = connection.connection.dbapi_connection
        reading = _reading_only.get()
        if dbapi_connection.autocommit != reading:
            dbapi_connection.autocommit = reading

    return engine


#: Seconds a SQLite writer waits for the write lock before "database is locked".
SQLITE_BUSY_SECONDS = 30
#: How often a writer first tries again for a write lock another process holds.
WRITE_POLL_SECONDS = 0.0002


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _sqlite_engine(url: str) -> Engine:
    # Pooled: opening a connection runs four PRAGMAs, and closing the last one checkpoints
    # the WAL; a request would pay both. The session registry gives each thread its own
    # connection and returns it (rolled back) at the end of the request.
    turn = threading.Lock()  # this process's writers take turns (see WriteTurnConnection)
    engine = create_engine(url, poolclass=QueuePool, pool_size=8, max_overflow=32,
                           pool_timeout=60,
                           connect_args={"timeout": SQLITE_BUSY_SECONDS,
                                         "check_same_thread": False,
                                         "factory": WriteTurnConnection})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        dbapi_connection.write_turn = turn
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A transaction that may write takes the write lock up front (IMMEDIATE), so
        # concurrent writers queue on the busy timeout instead of failing with SQLITE_BUSY
        # when a read upgrades to a write (the conditional debit depends on this). A
        # context that only reads sends no BEGIN at all: each SELECT is then its own
        # snapshot (as under PostgreSQL's READ COMMITTED, see _postgres_engine), never
        # waits for a writer (WAL), and the end of the request has no ROLLBACK to send.
        if not _reading_only.get():
            connection.connection.dbapi_connection.begin_immediate()

    return engine


class WriteTurnConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions first take this process's turn.

    SQLite lets one writer in at a time, and one that finds the lock taken sleeps in its
    busy handler, in steps up to 100 ms, whether the lock comes free after 1 ms or not.
    With a web process's or a worker's threads all writing, those sleeps, not the work,
    set the pace: a worker spent over a quarter of its threads' time in BEGIN IMMEDIATE.
    Here a process's writers queue on a lock that hands over at once, so at most one per
    process meets the busy handler (when another process is writing). The turn is held
    from BEGIN IMMEDIATE until COMMIT or ROLLBACK has finished, whatever ends it (the
    pool's reset on return included).
    """

    write_turn: threading.Lock | None = None
    _holds_turn = False

    def begin_immediate(self) -> None:
        """BEGIN IMMEDIATE, once this process's other writers are done."""
        if self.write_turn is not None and not self._holds_turn:
            if not self.write_turn.acquire(timeout=SQLITE_BUSY_SECONDS):
                raise sqlite3.OperationalError("database is locked")
            self._holds_turn = True
        try:
            self._begin_immediate_polling()
        except BaseException:
            self._end_turn()
            raise

    def _begin_immediate_polling(self) -> None:
        # Another process (the web's creates, a worker's finishes) holds the lock for a
        # millisecond or two at a time; SQLite's own busy handler would sleep 1, 2, 5,
        # 10 ms... between tries, so a busy lock cost each writer several times what the
        # holder needed. Tried here every WRITE_POLL_SECONDS at first, less often as the
        # wait grows, up to the same SQLITE_BUSY_SECONDS in all. Every other statement
        # keeps SQLite's busy handler.
        self.execute("PRAGMA busy_timeout=0")
        try:
            started = time.monotonic()
            while True:
                try:
                    self.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as error:
                    waited = time.monotonic() - started
                    if not _is_busy(error) or waited >= SQLITE_BUSY_SECONDS:
                        raise
                time.sleep(min(WRITE_POLL_SECONDS * (1 + waited * 100), 0.05))
        finally:
            self.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")

    def commit(self) -> None:
        """Commit, then let the next writer of this process in."""
        try:
            super().commit()
        finally:
            self._end_turn()

    def rollback(self) -> None:
        """Roll back, then let the next writer of this process in."""
        try:
            super().rollback()
        finally:
            self._end_turn()

    def close(self) -> None:
        """Close (SQLite rolls back what is open), then let the next writer in."""
        try:
            super().close()
        finally:
            self._end_turn()

    def _end_turn(self) -> None:
        if self._holds_turn:
            self._holds_turn = False
            self.write_turn.release()


# --- transactions that only read ----------------------------------------------------------

#: Set while the current context (a request, a block) promises not to write.
_reading_only: ContextVar[bool] = ContextVar("runbase_reading_only", default=False)
#: Set once the current context has sent a statement that writes.
_wrote: ContextVar[bool] = ContextVar("runbase_wrote", default=False)
_READ_STATEMENTS = ("SELECT", "WITH", "PRAGMA", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT",
                    "RELEASE", "SHOW", "SET")


class WriteWhileReading(RuntimeError):
    """A statement that writes ran in a context declared read-only: a bug, caught on every
    database (on SQLite it would fail with SQLITE_BUSY only under concurrent writes)."""


def _watch_statement(_conn, _cursor, statement, _params, _context, _executemany):
    """Before each statement: refuse writes in a read-only context; note that this context
    wrote (a call that wrote must never be retried)."""
    if statement.lstrip()[:9].upper().startswith(_READ_STATEMENTS):
        return
    if _reading_only.get():
        raise WriteWhileReading(f"a write in a read-only context: {statement[:80]}")
    _wrote.set(True)


def mark_written() -> None:
    """Note that this context's work was written (by another thread: write_group), so
    retry_on_disconnect never repeats it."""
    _wrote.set(True)


def begin_reading_only() -> Token:
    """Declare that this context's transactions only read, until end_reading_only(token).
    On SQLite they start deferred (no write lock); anything that writes is refused."""
    return _reading_only.set(True)


def end_reading_only(token: Token) -> None:
    """Undo begin_reading_only."""
    _reading_only.reset(token)


@contextmanager
def writing() -> Iterator[None]:
    """A block whose transactions may write, inside a read-only context (e.g. recording a
    key's last use during a GET). Commit or roll back inside the block: a transaction
    begun here starts as a writer."""
    token = _reading_only.set(False)
    try:
        yield
    finally:
        _reading_only.reset(token)


def reading_only() -> bool:
    """Whether the current context promised to only read."""
    return _reading_only.get()


def reads_only(view: Callable) -> Callable:
    """Mark a view that only reads the database (what a poll or a GET of the API does):
    its request runs in the read-only context, so on SQLite it never takes the write lock."""
    view.reads_only = True
    return view


def _declare_reads() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    # Set on every request, True or False: a thread serves many requests in turn.
    _reading_only.set(bool(getattr(view, "reads_only", False)))


def _end_reads(_exc) -> None:
    _reading_only.set(False)


# --- one retry when a pooled connection turns out to be dead ------------------------------



def retry_on_disconnect(call: Callable[[], T]) -> T:
    """Run `call`; if it fails because a pooled connection had been dropped by the server
    (a restart, a failover, an idle timeout) before it wrote anything, run it once more on
    a fresh connection. SQLAlchemy invalidates the whole pool on the first such error, so
    the second try gets a live connection; a call that did write is never repeated."""
    token = _wrote.set(False)
    try:
        return call()
    except DBAPIError as error:
        if not error.connection_invalidated or _wrote.get():
            raise
        log.warning("a pooled database connection was dead; retrying once")
        db.state().end_context()
        _wrote.set(False)
        return call()
    finally:
        _wrote.reset(token)


log = logging.getLogger(__name__)
db = Database()
login_manager = LoginManager()
csrf = CSRFProtect()
