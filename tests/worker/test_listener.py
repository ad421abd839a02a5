"""Standalone workers are woken when a run is created in another process, instead of
waiting for their next poll: by NOTIFY on PostgreSQL (a refused create wakes nobody), by
watching for other connections' commits on SQLite (commit_watch). One
listening worker is the first responder and starts new runs at once; the others take a
new run only once it has waited HELPER_LAG_SECONDS unclaimed (longer on a machine with no
CPU to spare)."""
from __future__ import annotations

import time
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import create_engine

from runbase_web import create_app
from runbase_web.extensions import db
from runbase_web.services.run_creation import WAKE_CHANNEL, notify_workers
from runbase_web.worker import Worker
from runbase_web.worker import listener as listener_module
from runbase_web.worker import runner
from runbase_web.worker.listener import RunListener
from tests.conftest import wait_for_run
from tests.fakes import openai as fake_openai
from tests.providers.support import start_fake, stop_soon
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_for

SKETCH = {"model": "local/sketch", "input": {"prompt": "a quiet harbour"}}
POLL_SECONDS = 30  # far longer than the test waits: only a notification can explain a start


@contextmanager
def _standalone(app, idle_cores: float | None = 8.0, **config):
    """A worker in an app of its own, as `flask --app app worker` runs beside the web app:
    the web app's in-process wake-up cannot reach it. Its machine has `idle_cores` to
    spare whatever the tests running beside it do (None: unknown)."""
    worker_app = create_app({**app.config, "WORKER_POLL_SECONDS": POLL_SECONDS, **config})
    worker = Worker(worker_app, threads=2, standalone=True)
    worker.host_cpu = _FixedCpu(idle_cores)
    worker.start()
    time.sleep(1.5)  # its first claim (at start) is done; from now on it waits
    try:
        yield worker
    finally:
        worker.stop(wait=True)
        db.state(worker_app).dispose()


class _FixedCpu:
    """A machine whose idle CPU stays what the test says."""

    def __init__(self, idle_cores: float | None):
        self.idle = idle_cores

    def idle_cores(self) -> float | None:
        return self.idle


def _others_last_statements(app) -> list[str]:
    """The last statement of every other client connection to the test's database."""
    conninfo = listener_module.conninfo(db.state(app).engine)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        return [row[0] for row in connection.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")]


@contextmanager
def _first_responder_held(app):
    """The test's own connection holds the first responder's lock, as a worker whose
    threads are all busy would: workers started meanwhile are not first responders."""
    conninfo = listener_module.conninfo(db.state(app).engine)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        assert connection.execute("SELECT pg_try_advisory_lock(%s)",
                                  (listener_module.FIRST_RESPONDER_LOCK,)).fetchone()[0]
        yield


@pytest.fixture
def standalone_worker(app):
    """A standalone worker (see _standalone), the only one."""
    with _standalone(app) as worker:
        yield worker


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_standalone_worker_starts_a_new_run_at_once(app, client, auth, standalone_worker):
    assert wait_for(lambda: standalone_worker.fresh_lag() == 0), "alone, it leads"
    created = time.monotonic()
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    run = wait_for_run(app, run_id, timeout=20, until=("processing", "succeeded", "failed"))
    # Well under a second on a quiet machine; anything well inside the 30 s poll proves
    # the wake-up (a loaded CI machine once took 5.9 s).
    assert time.monotonic() - created < POLL_SECONDS / 2, "the worker waited for its poll"
    assert wait_for_run(app, run.id).status == "succeeded"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_only_committed_creates_notify(app, user, make_key):
    woken = []
    listener = RunListener(db.state(app).engine, lambda: woken.append(time.monotonic())).start()
    try:
        deadline = time.monotonic() + 5
        while not woken and time.monotonic() < deadline:  # the listener's first look
            time.sleep(0.05)
        woken.clear()
        with app.app_context():
            notify_workers(db.session)
            db.session.rollback()
        time.sleep(1.5)
        assert woken == []
        with app.app_context():
            notify_workers(db.session)
            db.session.commit()
        deadline = time.monotonic() + 5
        while not woken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert woken
    finally:
        listener.stop()


def test_the_listener_hears_again_after_the_database_restarts(monkeypatch):
    monkeypatch.setattr(listener_module, "RECONNECT_SECONDS", 0.2)
    server = PostgresServer().start()
    engine = create_engine(server.create_database("listen"))
    woken: list[float] = []
    listener = RunListener(engine, lambda: woken.append(time.monotonic())).start()
    try:
        assert wait_for(lambda: woken)  # its first look on connecting
        assert listener.first_responder  # the only listener
        server.pause()
        assert wait_for(lambda: not listener.first_responder), "the lock went with it"
        time.sleep(1.0)
        server.resume()
        woken.clear()

        def notified() -> bool:
            with psycopg.connect(server.conninfo("listen"), autocommit=True) as sender:
                sender.execute(f"NOTIFY {WAKE_CHANNEL}")
            return bool(woken)
        assert wait_for(notified), "the listener never reconnected"
        assert listener.first_responder, "it leads again on its new connection"
    finally:
        listener.stop()
        engine.dispose()
        server.stop()


@contextmanager
def _quiet_listener(app, settle: float, **options):
    """A listener that has made its first look and heard nothing for `settle` s, and a
    connection to send NOTIFYs on: yields (the times it woke from then on, sender)."""
    woken: list[float] = []
    listener = RunListener(db.state(app).engine, lambda: woken.append(time.monotonic()),
                           **options).start()
    try:
        assert wait_for(lambda: woken)  # its first look on connecting
        time.sleep(settle)
        woken.clear()
        conninfo = listener_module.conninfo(db.state(app).engine)
        with psycopg.connect(conninfo, autocommit=True) as sender:
            yield woken, sender
    finally:
        listener.stop()


def _notify_and_wait(sender, woken: list[float]) -> float:
    """Send one NOTIFY; how long the listener took to wake for it."""
    heard_before, sent = len(woken), time.monotonic()
    sender.execute(f"NOTIFY {WAKE_CHANNEL}")
    assert wait_for(lambda: len(woken) > heard_before, timeout=5), "it did not wake"
    return woken[heard_before] - sent


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_burst_of_creates_wakes_a_worker_once_per_gathering_time(app):
    """The first NOTIFY wakes at once; the rest of a burst, sent while the listener
    gathers, are told in one more wake-up instead of one each."""
    # The gathering time is long enough that a loaded machine's delays (tenths of a
    # second) cannot blur "at once" with "after the gathering".
    gather = 2.0
    with _quiet_listener(app, gather + 0.2, gather_seconds=gather) as (woken, sender):
        assert _notify_and_wait(sender, woken) < gather / 2, \
            "the first NOTIFY after a quiet spell waited"
        for _ in range(50):  # each in a transaction of its own, as creates are
            sender.execute(f"NOTIFY {WAKE_CHANNEL}")
        time.sleep(gather + 1.0)
        assert len(woken) == 2, woken
        assert woken[1] - woken[0] >= gather - 0.05


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_listener_that_can_wait_stops_listening_then_looks_once_more(app):
    """A worker that needs to hear of new runs only once per `deaf_seconds` (one behind
    the first responder): after a wake-up its listener UNLISTENs for that long, so
    PostgreSQL sends it nothing however many runs are created, then listens again and
    wakes once more, for the runs created while it did not listen."""
    deaf = 2.0
    with _quiet_listener(app, 0.5, gather_seconds=0.05,
                         deaf_seconds=lambda: deaf) as (woken, sender):
        assert _notify_and_wait(sender, woken) < deaf / 2, \
            "the first NOTIFY after a quiet spell waited"
        assert wait_for(lambda: f"UNLISTEN {WAKE_CHANNEL}" in _others_last_statements(app),
                        timeout=deaf / 2)
        for _ in range(20):  # each in a transaction of its own, as creates are
            sender.execute(f"NOTIFY {WAKE_CHANNEL}")
        time.sleep(deaf + 1.0)
        assert len(woken) == 2, woken
        assert woken[1] - woken[0] >= deaf - 0.05, "it heard while it should not listen"
        assert f"LISTEN {WAKE_CHANNEL}" in _others_last_statements(app)
        assert _notify_and_wait(sender, woken) < deaf / 2, "it does not listen again"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_one_listener_is_the_first_responder_and_hands_over_when_it_stops(app, monkeypatch):
    monkeypatch.setattr(listener_module, "WAIT_SECONDS", 0.2)
    engine = db.state(app).engine
    listeners = [RunListener(engine, lambda: None).start() for _ in range(3)]
    try:
        assert wait_for(lambda: sum(item.first_responder for item in listeners) == 1)
        time.sleep(0.6)  # each has tried more than once by now
        assert sum(item.first_responder for item in listeners) == 1
        [leader] = [item for item in listeners if item.first_responder]
        assert [item.behind_another for item in listeners if item is not leader] == [True] * 2
        assert not leader.behind_another
        leader.stop()
        others = [item for item in listeners if item is not leader]
        assert wait_for(lambda: sum(item.first_responder for item in others) == 1,
                         timeout=10), "nobody took over from the stopped first responder"
        assert sum(item.behind_another for item in others) == 1
    finally:
        for item in listeners:
            item.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_behind_the_first_responder_takes_a_run_left_waiting(app, client, auth):
    # The first responder does not take the run: the standalone worker must start it
    # itself, once the run has waited HELPER_LAG_SECONDS, and without waiting for its
    # 30 s poll.
    with _first_responder_held(app):
        with _standalone(app) as worker:
            assert worker.fresh_lag() == runner.HELPER_LAG_SECONDS
            sent = time.monotonic()
            # The second comes while the worker waits to claim the first: too new for that
            # claim, it needs a look of its own. Having heard of the first, the worker
            # does not listen for the lag, so it never hears of the second: the look it
            # takes when it listens again finds it.
            run_ids = []
            for _ in range(2):
                run_ids.append(client.post("/api/v1/runs", json=SKETCH,
                                           headers=auth).get_json()["id"])
                time.sleep(runner.HELPER_LAG_SECONDS / 2)
            for run_id in run_ids:
                run = wait_for_run(app, run_id, timeout=20,
                                   until=("processing", "succeeded", "failed"))
                assert time.monotonic() - sent < POLL_SECONDS / 2, "it waited for its poll"
                waited = (run.started_at - run.created_at).total_seconds()
                assert waited >= runner.HELPER_LAG_SECONDS, "it did not leave the run waiting"
                assert wait_for_run(app, run_id).status == "succeeded"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_helper_on_a_busy_machine_leaves_new_runs_longer(app, client, auth, monkeypatch):
    # No CPU to spare: the helper would only take CPU from the first responder's machine,
    # so it leaves a new run HELPER_BUSY_HOST_LAG_SECONDS, and then still takes it. Having
    # heard of the run, it stops listening for that long (long enough here to be seen).
    busy_lag = 2.0
    monkeypatch.setattr(runner, "HELPER_BUSY_HOST_LAG_SECONDS", busy_lag)
    with _first_responder_held(app):
        with _standalone(app, idle_cores=runner.SPARE_CORES / 2) as worker:
            assert worker.fresh_lag() == busy_lag
            worker.host_cpu.idle = None
            assert worker.fresh_lag() == runner.HELPER_LAG_SECONDS, "unknown: as if spare"
            worker.host_cpu.idle = runner.SPARE_CORES / 2
            assert f"UNLISTEN {WAKE_CHANNEL}" not in _others_last_statements(app)
            run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
            assert wait_for(lambda: f"UNLISTEN {WAKE_CHANNEL}" in _others_last_statements(app),
                            timeout=busy_lag / 2), "the helper kept listening"
            run = wait_for_run(app, run_id, timeout=20,
                               until=("processing", "succeeded", "failed"))
            waited = (run.started_at - run.created_at).total_seconds()
            assert busy_lag <= waited < POLL_SECONDS / 2, waited
            assert wait_for_run(app, run_id).status == "succeeded"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_whose_turns_are_long_takes_new_runs_at_once(app, client, auth,
                                                              monkeypatch):
    # With a slow provider claims are few whoever makes them, and the first responder
    # may have no free thread: a new run must not wait HELPER_LAG_SECONDS for one.
    fake, server = start_fake(fake_openai.make_app)
    fake.script["images"].append(("sleep", 2 * runner.QUEUE_AHEAD_TURN_SECONDS))
    provider = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url + "/v1"}
    monkeypatch.setitem(app.config, "PROVIDER_ENV", provider)  # the web app offers it too
    slow = {"model": "openai/gpt-image-1", "input": {"prompt": "slow"}}
    try:
        with _first_responder_held(app):
            with _standalone(app, PROVIDER_ENV=provider) as worker:
                assert worker.fresh_lag() == runner.HELPER_LAG_SECONDS
                run_id = client.post("/api/v1/runs", headers=auth, json=slow).get_json()["id"]
                assert wait_for_run(app, run_id).status == "succeeded"
                assert worker.fresh_lag() == 0, "its turns are long now"
    finally:
        stop_soon(server)
