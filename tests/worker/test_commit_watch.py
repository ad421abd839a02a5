"""The SQLite commit watcher that wakes standalone workers: it wakes on another
connection's committed change, not on reads, rolled-back writes or empty transactions,
and looks once after its connection failed (it may have missed a commit meanwhile). A
real `flask --app app worker` process uses it."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from runbase_web.worker import commit_watch
from runbase_web.worker.commit_watch import CommitWatcher, database_file
from tests.conftest import wait_for_run
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]

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
    assert watcher.watching.wait(timeout=10)  # its first look, which wakes nobody
    return watcher


def test_a_commit_by_another_connection_wakes_the_worker(database):
    path, connection = database
    woken: list[float] = []
    watcher = _watching(path, woken)
    try:
        assert woken == []
        connection.execute("INSERT INTO runs VALUES ('run_1')")
        # Well under a second, on a quiet machine; any wake-up at all proves the watch.
        assert wait_for(lambda: woken, timeout=5.0), "no wake-up after a commit"
    finally:
        watcher.stop()


def test_a_commit_just_after_start_wakes_the_worker(database):
    # The first answer is taken before start() returns, not when the thread first gets
    # the CPU: with a slow first turn (here a long interval) the commit is still seen.
    path, connection = database
    woken: list[float] = []
    watcher = CommitWatcher(path, lambda: woken.append(time.monotonic()), interval=0.5).start()
    try:
        assert watcher.watching.is_set()
        connection.execute("INSERT INTO runs VALUES ('run_1')")
        assert wait_for(lambda: woken, timeout=5.0), "the commit before the first turn was missed"
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


def test_the_worker_command_starts_a_new_run_long_before_its_poll(app, client, auth, tmp_path):
    # The web app (the test client) cannot wake a worker in another process, and that
    # worker polls every 30 s: only the commit watch can explain a start within seconds.
    env = dict(os.environ, RUNBASE_DATABASE_URL=app.config["DATABASE_URL"],
               RUNBASE_DATA_DIR=app.config["DATA_DIR"], RUNBASE_WORKER_POLL_SECONDS="30",
               RUNBASE_EMBEDDED_WORKER="0", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "running" in log_path.read_text() or process.poll() is not None,
                        timeout=30) and process.poll() is None, log_path.read_text()
        time.sleep(1.0)  # its first claim, at start, is over
        created = time.monotonic()
        run_id = client.post("/api/v1/runs", headers=auth,
                             json={"model": "local/sketch", "input": {"prompt": "a harbour"}}
                             ).get_json()["id"]
        wait_for_run(app, run_id, timeout=20, until=("processing", "succeeded", "failed"))
        assert time.monotonic() - created < 15, log_path.read_text()  # half the poll
        assert wait_for_run(app, run_id).status == "succeeded"
    finally:
        process.terminate()
        process.wait(timeout=30)
