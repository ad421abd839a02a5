"""Extensions, created unbound and attached to an app in create_app()."""
from __future__ import annotations

import logging

from flask import Flask, current_app
from flask_login import LoginManager
from flask_wtf import CSRFProtect
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.pool import NullPool


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
        app.extensions[self.key] = _AppDatabase(engine, factory, scoped_session(factory))
        app.teardown_appcontext(lambda _exc: remove_session(app.extensions[self.key].session))

    def state(self, app: Flask | None = None) -> "_AppDatabase":
        """The engine and session registry of `app` (default: the current app)."""
        return (app or current_app).extensions[self.key]

    @property
    def session(self) -> Session:
        """The current thread's session for the current app."""
        return self.state().session()

    @property
    def engine(self) -> Engine:
        """The current app's engine."""
        return self.state().engine


#: Seconds a client is asked to wait when the database is out of reach.
OUTAGE_RETRY_AFTER = 2


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database is out of reach (down, restarting, connection
    dropped, pool exhausted, locked) rather than that the request or the code is wrong."""
    if isinstance(error, SqlTimeoutError):
        return True
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


class _AppDatabase:
    def __init__(self, engine: Engine, factory: sessionmaker, session: scoped_session):
        self.engine = engine
        self.factory = factory
        self.session = session


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: SQLite in WAL with write-locking transactions."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # Enough connections for a burst of concurrent creates; the rest queue in the pool.
    return create_engine(url, pool_size=10, max_overflow=30, pool_timeout=60,
                         pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    # NullPool: SQLite connections are cheap, and pooling them across threads only
    # adds ways to share a connection that still has a transaction open.
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock up front, so concurrent writers queue on the
        # busy timeout instead of failing with SQLITE_BUSY when a read upgrades to a
        # write (the conditional debit depends on this).
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


log = logging.getLogger(__name__)
db = Database()
login_manager = LoginManager()
csrf = CSRFProtect()
