"""Extensions, created unbound and attached to an app in create_app()."""
from __future__ import annotations

from flask import Flask, current_app
from flask_login import LoginManager
from flask_wtf import CSRFProtect
from sqlalchemy import Engine, create_engine, event
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
        app.teardown_appcontext(lambda _exc: app.extensions[self.key].session.remove())

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
        # write (the conditional debit depends on this; reliability.md §1.3).
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


db = Database()
login_manager = LoginManager()
csrf = CSRFProtect()
