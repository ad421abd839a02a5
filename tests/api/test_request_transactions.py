"""How API requests use the database: a GET is one read transaction that never waits for
SQLite's write lock, a create is one write transaction, key look-ups are cached (and
forgotten when a key changes), and a request that meets a connection the server dropped
is retried once when it had not written yet."""
from __future__ import annotations

import os
import sqlite3
import threading
import time

import psycopg
import pytest
from sqlalchemy import event, text, update
from sqlalchemy.exc import DBAPIError

from runbase_web import extensions
from runbase_web.extensions import db
from runbase_web.models import ApiKey, Run
from runbase_web.services import keys as key_service
from runbase_web.state import run_creator
from runbase_web.worker.listener import conninfo

SKETCH = {"model": "local/sketch", "input": {"prompt": "a lighthouse"}}


class Statements:
    """Records the statements and transactions an engine sees."""

    def __init__(self, engine):
        self.engine, self.sql, self.begins = engine, [], 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)

    def _statement(self, _conn, _cursor, statement, *_args):
        self.sql.append(" ".join(statement.split()))

    def _begin(self, _conn):
        self.begins += 1

    def reset(self):
        self.sql, self.begins = [], 0

    def queries(self):
        """Statements other than transaction control."""
        return [s for s in self.sql if not s.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))]


@pytest.fixture
def statements(app):
    with app.app_context():
        return Statements(db.engine)


def test_a_get_is_one_read_of_the_run(app, client, auth, statements):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)  # the key's look-up is now cached
    statements.reset()
    response = client.get(f"/api/v1/runs/{run_id}", headers=auth)
    assert response.status_code == 200
    assert statements.begins == 1
    assert len(statements.queries()) == 1 and "FROM runs" in statements.queries()[0]


def _in_transaction(dbapi_connection) -> bool:
    """Whether the driver runs the next statement inside a transaction: psycopg's
    autocommit flag, sqlite3's own view (BEGIN IMMEDIATE is sent by the connection
    itself, extensions.WriteTurnConnection, so SQLAlchemy's events never see it)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        return dbapi_connection.in_transaction
    return not dbapi_connection.autocommit


def test_a_get_sends_no_begin_and_a_create_runs_in_a_transaction(app, client, auth,
                                                                   database_url):
    """Reads run in the driver's autocommit (no BEGIN, nothing to roll back at the end:
    on PostgreSQL one round trip); a create's statements run inside a real transaction,
    on PostgreSQL as one statement. Seen from the driver at each statement."""
    seen = []

    def record(conn, _cursor, statement, *_args):
        seen.append((statement.split()[0].upper(),
                     _in_transaction(conn.connection.dbapi_connection)))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)
    seen.clear()
    assert client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code == 200
    assert seen == [("SELECT", False)]
    seen.clear()
    assert client.post("/api/v1/runs", json=SKETCH, headers=auth).status_code == 201
    assert seen and all(in_transaction for _, in_transaction in seen)
    if database_url.startswith("postgresql"):
        assert seen == [("WITH", True)]


def test_a_create_is_one_transaction(app, client, auth, statements):
    client.post("/api/v1/runs", json=SKETCH, headers=auth)
    statements.reset()
    assert client.post("/api/v1/runs", json=SKETCH, headers=auth).status_code == 201
    assert statements.begins == 1
    assert not any("api_keys.key_hash" in s for s in statements.sql)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_a_create_without_an_idempotency_key_commits_with_others(
        app, client, auth, monkeypatch):
    with app.app_context():
        group = db.write_group()
    grouped = []
    real_run = group.run
    monkeypatch.setattr(group, "run", lambda write: grouped.append(write) or real_run(write))

    assert client.post("/api/v1/runs", json=SKETCH, headers=auth).status_code == 201
    assert len(grouped) == 1
    # With a key, the idempotency record must share the run's own transaction.
    keyed = {**auth, "Idempotency-Key": "one"}
    assert client.post("/api/v1/runs", json=SKETCH, headers=keyed).status_code == 201
    assert len(grouped) == 1


def test_only_sqlite_has_a_write_group(app, database_url):
    with app.app_context():
        assert (db.write_group() is not None) == database_url.startswith("sqlite")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_get_does_not_wait_for_a_writer(app, client, auth):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)
    writer = sqlite3.connect(app.config["DATABASE_URL"].removeprefix("sqlite:///"),
                             isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a long create would
    answers = []
    reader = threading.Thread(target=lambda: answers.append(
        client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code))
    try:
        reader.start()
        reader.join(timeout=5)
        assert answers == [200], "a GET waited for the write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        reader.join()


def test_a_read_only_view_may_not_write(app, user):
    token = extensions.begin_reading_only()
    try:
        with app.app_context():
            with pytest.raises(extensions.WriteWhileReading):
                db.session.execute(text("UPDATE users SET email = email"))
            db.session.rollback()
            with extensions.writing():  # unless it says so for one block
                db.session.execute(text("UPDATE users SET email = email"))
                db.session.commit()
    finally:
        extensions.end_reading_only(token)


def test_a_key_disabled_here_stops_at_once(app, client, auth, api_key, user):
    client.get("/api/v1/account", headers=auth)  # cached
    with app.app_context():
        key = key_service.find_active_key(db.session, api_key)
        key_service.set_disabled(db.session, user.id, key.id, True)
        db.session.commit()
    assert client.get("/api/v1/account", headers=auth).status_code == 401


@pytest.mark.parametrize("app_config", [{"KEY_CACHE_SECONDS": 0.5}])
def test_a_key_disabled_elsewhere_stops_within_the_cache_window(app, client, auth, api_key):
    assert client.get("/api/v1/account", headers=auth).status_code == 200
    # Another process (here: a plain connection) disables the key: this one is not told.
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(update(ApiKey).where(ApiKey.key_hash == key_service.hash_key(api_key))
                           .values(disabled=True))
    time.sleep(0.6)
    assert client.get("/api/v1/account", headers=auth).status_code == 401


def test_a_made_up_key_is_looked_up_once(app, client, statements):
    headers = {"Authorization": "Bearer sk-" + "x" * 40}
    assert client.get("/api/v1/account", headers=headers).status_code == 401
    statements.reset()
    assert client.get("/api/v1/account", headers=headers).status_code == 401
    assert statements.queries() == []


def test_last_use_is_recorded(app, client, auth, api_key):
    client.get("/api/v1/account", headers=auth)
    with app.app_context():
        assert key_service.find_active_key(db.session, api_key).last_used_at is not None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_requests_survive_connections_the_server_dropped(app, client, auth):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)  # this thread now keeps a connection
    with app.app_context():
        target = db.engine.url.database
        info = conninfo(db.engine)
    with psycopg.connect(info, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (target,))
    # The pool still holds the dead connections; each request is retried on a fresh one.
    assert client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code == 200
    assert client.post("/api/v1/runs", json=SKETCH, headers=auth).status_code == 201


class _Dropped(DBAPIError):
    def __init__(self):
        super().__init__("SELECT 1", {}, Exception("server closed the connection"),
                         connection_invalidated=True)


def test_a_call_is_retried_once_only_when_it_had_not_written(app, user):
    calls = []

    def read_then_drop():
        calls.append("read")
        if len(calls) == 1:
            raise _Dropped()
        return "ok"

    with app.app_context():
        assert extensions.retry_on_disconnect(read_then_drop) == "ok" and calls == ["read"] * 2

        def write_then_drop():
            calls.append("write")
            db.session.execute(text("UPDATE users SET email = email"))
            raise _Dropped()

        calls.clear()
        with pytest.raises(_Dropped):
            extensions.retry_on_disconnect(write_then_drop)
        assert calls == ["write"]
        db.session.rollback()


class _LeaderElsewhere:
    """A write group whose leader is another thread (as for a create that queued): the
    write runs and commits there, in a context that is not the caller's."""

    def __init__(self, engine):
        self.engine = engine

    def run(self, write):
        def lead():
            with self.engine.begin() as connection:
                write(connection)
        leader = threading.Thread(target=lead)
        leader.start()
        leader.join(20)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_create_committed_by_another_thread_is_never_retried(app, user):
    def create_then_drop():
        run_creator(app).create(db.session, user_id=user.id, model_id="local/sketch",
                                raw_input={"prompt": "once"}, source="api", atomic=False,
                                group=_LeaderElsewhere(db.engine))
        raise _Dropped()

    with app.app_context():
        with pytest.raises(_Dropped):
            extensions.retry_on_disconnect(create_then_drop)
        db.session.rollback()
        assert db.session.query(Run).filter_by(user_id=user.id).count() == 1


class PoolTraffic:
    """Counts connections taken from and given back to an engine's pool."""

    def __init__(self, engine):
        self.engine, self.checkouts, self.checkins = engine, 0, 0
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *_args):
        self.checkouts += 1

    def _checkin(self, *_args):
        self.checkins += 1

    def reset(self):
        self.checkouts = self.checkins = 0


@pytest.fixture
def pool(app):
    with app.app_context():
        return PoolTraffic(db.engine)


def _get_twice(client, auth, run_id):
    for _ in range(2):
        assert client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code == 200


def test_a_thread_keeps_its_read_connection_from_one_get_to_the_next(app, client, auth, pool):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)
    pool.reset()
    _get_twice(client, auth, run_id)
    assert (pool.checkouts, pool.checkins) == (0, 0)
    db.state(app).dispose()  # an app done with its database gives it back
    assert pool.checkins == 1 and db.state(app).engine.pool.checkedout() == 0


def test_a_kept_connection_goes_back_to_the_pool_when_its_thread_ends(app, client, auth, pool):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    before = db.state(app).engine.pool.checkedout()
    pool.reset()
    served = threading.Thread(target=_get_twice, args=(client, auth, run_id))
    served.start()
    served.join()
    assert pool.checkouts == 1 and pool.checkins == 1  # kept for its second GET, then back
    assert db.state(app).engine.pool.checkedout() == before


def test_a_kept_connection_is_recycled_after_its_time(app, client, auth, pool, monkeypatch):
    monkeypatch.setattr(extensions, "KEPT_CONNECTION_SECONDS", 0.0)
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)
    pool.reset()
    _get_twice(client, auth, run_id)
    assert pool.checkouts == 2 and pool.checkins == 2


def test_a_forked_child_never_touches_the_connection_its_parent_kept(app, client, auth, pool):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    client.get(f"/api/v1/runs/{run_id}", headers=auth)  # kept by this thread
    pool.reset()
    child = os.fork()
    if child == 0:  # the child: its own connection, and the parent's left alone at exit
        try:
            ok = client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code == 200
            db.state(app).dispose()
            os._exit(0 if ok and pool.checkouts == 1 else 1)
        except BaseException:  # noqa: BLE001 - never return into pytest in the child
            os._exit(2)
    _pid, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _get_twice(client, auth, run_id)  # the parent's kept connection still works
    assert (pool.checkouts, pool.checkins) == (0, 0)
