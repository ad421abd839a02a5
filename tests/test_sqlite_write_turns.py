"""SQLite writers (extensions.WriteTurnConnection): a process's threads take turns at
the write lock, every way a transaction ends hands the turn on, a lock held by another
process is waited for (polled, not slept on in SQLite's busy handler) up to the busy
timeout and then refused as "database is locked", and concurrent writers lose nothing."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from runbase_web import extensions
from runbase_web.extensions import make_engine

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        connection.execute(text("INSERT INTO counter VALUES (1, 0)"))
    yield engine
    engine.dispose()


def _path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def _turn(engine) -> threading.Lock:
    with engine.connect() as connection:
        return connection.connection.dbapi_connection.write_turn


def test_many_threads_writing_at_once_lose_nothing(engine):
    def add(times: int):
        for _ in range(times):
            with engine.begin() as connection:
                value = connection.execute(text("SELECT n FROM counter")).scalar_one()
                connection.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})

    threads = [threading.Thread(target=add, args=(50,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with engine.connect() as connection:
        # A read-modify-write in each transaction: any overlap would lose increments.
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 400
    assert not _turn(engine).locked()


@pytest.mark.parametrize("ending", ["commit", "rollback", "close", "error"])
def test_every_end_of_a_write_transaction_hands_the_turn_on(engine, ending):
    turn = _turn(engine)
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(text("UPDATE counter SET n = n + 1"))
    assert turn.locked()
    if ending == "commit":
        transaction.commit()
    elif ending == "rollback":
        transaction.rollback()
    elif ending == "error":
        with pytest.raises(Exception):
            connection.execute(text("INSERT INTO counter VALUES (1, 1)"))  # duplicate key
        transaction.rollback()
    connection.close()
    assert not turn.locked()


def test_reads_take_no_turn(engine):
    token = extensions.begin_reading_only()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT n FROM counter")).scalar_one()
            assert not _turn(engine).locked()
    finally:
        extensions.end_reading_only(token)


def test_a_lock_another_process_holds_is_waited_for_then_taken(engine, database_url):
    other = sqlite3.connect(_path(database_url), isolation_level=None,
                            check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    with engine.begin() as connection:
        connection.execute(text("UPDATE counter SET n = n + 1"))
    assert time.monotonic() - started >= 0.25
    # The lock is free before the timer's COMMIT call has returned: closing the
    # connection under it crashed the interpreter (a segfault in sqlite3) once in CI.
    release.join()
    other.close()
    with engine.connect() as connection:
        # The busy timeout is back for every other statement.
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == (
            extensions.SQLITE_BUSY_SECONDS * 1000)


def test_a_lock_held_past_the_busy_timeout_is_refused_and_frees_the_turn(
        engine, database_url, monkeypatch):
    monkeypatch.setattr(extensions, "SQLITE_BUSY_SECONDS", 0.3)
    other = sqlite3.connect(_path(database_url), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Exception, match="database is locked"):
            with engine.begin() as connection:
                connection.execute(text("UPDATE counter SET n = n + 1"))
        assert not _turn(engine).locked()
    finally:
        other.execute("ROLLBACK")
        other.close()
    with engine.begin() as connection:  # and the next writer gets in
        connection.execute(text("UPDATE counter SET n = n + 1"))
