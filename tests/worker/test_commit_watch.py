"""The SQLite commit watcher that wakes standalone workers: it wakes on another
connection's committed change, not on reads, rolled-back writes or empty transactions,
and looks once after its connection failed (it may have missed a commit meanwhile)."""
from __future__ import annotations

import sqlite3
import time

import pytest
from sqlalchemy import create_engine

from runbase_web.worker import commit_watch
from runbase_web.worker.commit_watch import CommitWatcher, database_file
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def database(tmp_path):
    """A WAL-mode SQLite file with one table, and an autocommit connection to it."""
    path = tmp_path / "watched.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE runs (id TEXT)")
    yield str(path), connection
    connection.close()



def _watching(path: str, woken: list) -> CommitWatcher:
    watcher = CommitWatcher(path, lambda: woken.append(time.monotonic())).start()
    time.sleep(0.2)  # its first look, which wakes nobody
    return watcher


def test_a_commit_by_another_connection_wakes_the_worker(database):
    path, connection = database
    woken: list[float] = []
    watcher = _watching(path, woken)
    try:
        assert woken == []
        connection.execute("INSERT INTO runs VALUES ('run_1')")
        assert wait_for(lambda: woken, timeout=1.0), "no wake-up after a commit"
    finally:
        watcher.stop()


def test_reads_rollbacks_and_empty_writes_wake_nobody(database):
    path, connection = database
    woken: list[float] = []
    watcher = _watching(path, woken)
    try:
        connection.execute("SELECT * FROM runs").fetchall()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO runs VALUES ('run_1')")
        connection.execute("ROLLBACK")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE runs SET id = 'x' WHERE id = 'nothing'")
        connection.execute("COMMIT")
        time.sleep(0.3)
        assert woken == []
    finally:
        watcher.stop()


def test_after_its_connection_failed_it_looks_once(database, monkeypatch):
    path, _connection = database
    monkeypatch.setattr(commit_watch, "REOPEN_SECONDS", 0.05)
    opened = commit_watch._open
    failures = iter([sqlite3.OperationalError("unable to open database file")])

    def flaky_open(target: str) -> sqlite3.Connection:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return opened(target)
    monkeypatch.setattr(commit_watch, "_open", flaky_open)
    woken: list[float] = []
    watcher = CommitWatcher(path, lambda: woken.append(time.monotonic())).start()
    try:
        assert wait_for(lambda: woken, timeout=5), "a commit during the failure would be missed"
        time.sleep(0.2)
        assert len(woken) == 1
    finally:
        watcher.stop()


def test_it_never_creates_a_database(tmp_path):
    missing = tmp_path / "missing.db"
    watcher = CommitWatcher(str(missing), lambda: None).start()
    time.sleep(0.1)
    watcher.stop()
    assert not missing.exists()


def test_only_a_sqlite_file_is_watched(tmp_path):
    assert database_file(create_engine(f"sqlite:///{tmp_path}/a.db")) == f"{tmp_path}/a.db"
    assert database_file(create_engine("sqlite://")) is None
    assert database_file(create_engine("sqlite:///:memory:")) is None
    assert database_file(create_engine("postgresql+psycopg://u@127.0.0.1/x")) is None
