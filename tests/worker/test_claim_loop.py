"""Claiming: one transaction leases a batch (never more rows than free threads) and
counts the attempts of runs about to start; the loop claims when something is due
(polls on the provider's schedule, not the worker's poll interval) and, with a backlog,
lets a few threads free up so that one claim serves several turns."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from runbase_web import create_app
from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from runbase_web.providers.base import Done, Output
from runbase_web.worker import Worker, runner
from runbase_web.worker import claim as claim_module
from runbase_web.worker.claim import claim_work
from tests.conftest import wait_for_run
from tests.fakes.replicate import tiny_png
from tests.worker.test_transactions import PollingAdapter, TransactionCounter

TEST = {"model": "local/test", "input": {"prompt": "claimed"}}


def _create(client, auth, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = client.post("/api/v1/runs", json=TEST, headers=auth)
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    return ids


def _runs(app, ids) -> list[Run]:
    with app.app_context():
        return [db.session.get(Run, run_id) for run_id in ids]


def test_one_transaction_leases_a_batch_and_counts_its_attempts(app, client, auth):
    ids = _create(client, auth, 5)
    counter = TransactionCounter(db.state(app).engine)
    claim = claim_work(app, "owner-a", 8, 30)
    assert counter.begins == 1
    assert sorted(run.id for run in claim.runs) == sorted(ids) and claim.short
    assert all(run.attempts == 1 and run.adapter == "local" for run in claim.runs)
    for run in _runs(app, ids):
        assert run.lease_owner == "owner-a" and run.status == "processing"
        assert run.attempts == 1 and run.adapter == "local"


def test_a_claim_reads_no_more_runs_than_free_slots(app, client, auth, monkeypatch):
    ids = _create(client, auth, 5)
    asked = []

    def choose(session, limit, **kwargs):
        rows = real(session, limit, **kwargs)
        asked.append((limit, len(rows)))
        return rows
    real = claim_module.choose_due_runs
    monkeypatch.setattr(claim_module, "choose_due_runs", choose)
    claim = claim_work(app, "owner-a", 2, 30)
    assert asked == [(2, 2)]  # LIMIT in the query: the other three rows are never read
    assert len(claim.runs) == 2 and not claim.short
    assert claim.next_due is None  # a full claim does not look further
    assert sum(run.lease_owner is None for run in _runs(app, ids)) == 3


def test_a_claim_that_took_everything_says_when_the_next_run_falls_due(app, client, auth):
    [waiting] = _create(client, auth, 1)
    due = utcnow() + timedelta(seconds=7)
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == waiting).values(
            status="processing", upstream_id="job", next_check_at=due))
        db.session.commit()
    claim = claim_work(app, "owner-a", 4, 30)
    assert claim.runs == [] and claim.short
    assert abs((claim.next_due - due).total_seconds()) < 0.01


class StatementCounter:
    """Counts the statements (cursor executes; an executemany is one) sent on an engine."""

    def __init__(self, engine):
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args):
        self.count += 1


def test_a_short_claim_is_four_statements_between_begin_and_commit(app, client, auth):
    ids = _create(client, auth, 3)
    statements = StatementCounter(db.state(app).engine)
    claim = claim_work(app, "owner-a", 8, 30)
    # new runs, waiting runs, the lease (attempts counted in it), the next due times
    assert statements.count == 4 and len(claim.runs) == 3 and claim.short
    statements.count = 0
    assert claim_work(app, "owner-b", 8, 30).runs == []
    assert statements.count == 3  # nothing to lease
    assert all(run.lease_owner == "owner-a" and run.attempts == 1 for run in _runs(app, ids))


def test_a_due_upstream_cancel_is_taken_and_a_later_one_sets_the_next_due_time(app, client,
                                                                                 auth):
    due_now, later = _create(client, auth, 2)
    in_seven = utcnow() + timedelta(seconds=7)
    with app.app_context():
        for run_id, check_at in ((due_now, utcnow() - timedelta(seconds=1)), (later, in_seven)):
            db.session.execute(update(Run).where(Run.id == run_id).values(
                status="canceled", upstream_id="job", upstream_cancel="requested",
                next_check_at=check_at))
        db.session.commit()
    claim = claim_work(app, "owner-a", 4, 30)
    assert claim.runs == [] and claim.cancels == [due_now] and claim.short
    assert abs((claim.next_due - in_seven).total_seconds()) < 0.01
    # The taken cancel is pushed out by the lease: no other worker takes it meanwhile.
    again = claim_work(app, "owner-b", 4, 30)
    assert again.cancels == []
    assert abs((again.next_due - in_seven).total_seconds()) < 0.01


def test_a_run_out_of_attempts_is_not_counted_again(app, client, auth):
    [run_id] = _create(client, auth, 1)
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(attempts=3))
        db.session.commit()
    [claimed] = claim_work(app, "owner-a", 4, 30).runs
    assert claimed.refusal is not None and claimed.refusal[1] == "provider_error"
    assert _runs(app, [run_id])[0].attempts == 3


@pytest.fixture
def quiet_worker(app):
    """Factory: a standalone worker whose own poll interval is a minute, so only due
    times, wake-ups and its backlog can make it claim."""
    started = []

    def start(threads: int) -> tuple[Worker, TransactionCounter]:
        worker_app = create_app({**app.config, "WORKER_POLL_SECONDS": 60})
        counter = TransactionCounter(db.state(worker_app).engine)
        started.append(Worker(worker_app, threads=threads).start())
        return started[-1], counter
    yield start
    for worker in started:
        worker.stop(wait=True)
        db.state(worker.app).dispose()


def test_polls_follow_the_providers_schedule_not_the_worker_poll(app, client, auth,
                                                                 quiet_worker, monkeypatch):
    adapter = PollingAdapter(polls=5)  # each poll due 0.05 s after the last
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    worker, _counter = quiet_worker(threads=2)
    time.sleep(0.3)
    started = time.monotonic()
    [run_id] = _create(client, auth, 1)
    worker.wake()
    assert wait_for_run(app, run_id, timeout=15).status == "succeeded"
    assert time.monotonic() - started < 5  # six looks at 0.05 s, not at a 60 s poll
    assert adapter.calls.count("poll") == 6


def test_with_a_backlog_one_claim_serves_several_turns(app, client, auth, quiet_worker,
                                                       monkeypatch):
    adapter = PollingAdapter(polls=3)
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    ids = _create(client, auth, 40)  # before the worker: all due at its first claim
    claims = []
    worker, _counter = quiet_worker(threads=8)
    event.listen(db.state(worker.app).engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: claims.append(1)
                 if statement.startswith("SELECT runs.id, runs.user_id") and "coalesce" in statement
                 else None)
    for run_id in ids:
        assert wait_for_run(app, run_id, timeout=60).status == "succeeded"
    turns = len(adapter.calls)  # 40 starts and 4 polls each
    assert turns == 200
    assert len(claims) < turns / 2, f"{len(claims)} claims for {turns} turns"


def _run(app, run_id: str) -> Run:
    with app.app_context():
        return db.session.get(Run, run_id)


def test_a_pending_poll_is_written_back_soon_with_nothing_else_to_claim(
        app, client, auth, quiet_worker, monkeypatch):
    adapter = PollingAdapter(polls=5, wait=30)
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    worker, _counter = quiet_worker(threads=2)
    [run_id] = _create(client, auth, 1)
    worker.wake()
    assert adapter.polled.wait(10)
    time.sleep(runner.RELEASE_DELAY_SECONDS + 1.0)
    run = _run(app, run_id)
    assert run.lease_owner is None and run.upstream_state["polls"] == 1
    assert 20 < (run.next_check_at - utcnow()).total_seconds() <= 30


def test_stopping_writes_back_the_pending_polls(app, client, auth, quiet_worker, monkeypatch):
    monkeypatch.setattr(runner, "RELEASE_DELAY_SECONDS", 60)
    adapter = PollingAdapter(polls=5, wait=30)
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    worker, _counter = quiet_worker(threads=2)
    [run_id] = _create(client, auth, 1)
    worker.wake()
    assert adapter.polled.wait(10)
    time.sleep(0.3)
    assert _run(app, run_id).lease_owner is not None  # still pending in memory
    worker.stop(wait=True)
    run = _run(app, run_id)
    assert run.lease_owner is None and run.upstream_state["polls"] == 1


def test_a_poll_ending_after_a_stop_without_waiting_is_written_back(
        app, client, auth, quiet_worker, monkeypatch):
    # A worker stopped mid-poll (stop(wait=False), as a restart does) must not leave the
    # run leased until its lease expires: the turn writes its own release.
    adapter = PollingAdapter(polls=5, wait=30, poll_seconds=0.5)
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    worker, _counter = quiet_worker(threads=2)
    [run_id] = _create(client, auth, 1)
    worker.wake()
    assert adapter.polled.wait(10)
    worker.stop(wait=False)
    deadline = time.monotonic() + 5
    while _run(app, run_id).lease_owner is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    run = _run(app, run_id)
    assert run.lease_owner is None and run.upstream_state["polls"] == 1


def test_a_failing_claim_is_retried_without_spinning(app, quiet_worker, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(time.monotonic())
        raise RuntimeError("the database went away")
    monkeypatch.setattr(runner, "claim_work", broken)
    worker, _counter = quiet_worker(threads=2)
    time.sleep(0.2)
    worker.wake()  # a wake-up during the pause is remembered, not lost
    time.sleep(2.5)
    assert 2 <= len(calls) <= 5  # about one try a second (CLAIM_RETRY_SECONDS)


class BlockingAdapter:
    """A provider call that does not return until released."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def start(self, job):
        self.entered.set()
        self.release.wait(30)
        return Done([Output("image/png", tiny_png())])


def test_a_worker_whose_threads_are_all_busy_waits_instead_of_spinning(app, client, auth,
                                                                      monkeypatch):
    """With every thread on a slow provider call there is nothing to claim: the loop must
    sleep until a thread comes free, even once its poll time has passed."""
    adapter = BlockingAdapter()
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    worker_app = create_app({**app.config, "WORKER_POLL_SECONDS": 0.05})
    worker = Worker(worker_app, threads=1)
    looks = []
    real = worker._seconds_to_wait
    worker._seconds_to_wait = lambda: looks.append(1) or real()
    worker.start()
    try:
        [run_id] = _create(client, auth, 1)
        worker.wake()
        assert adapter.entered.wait(15)
        looks.clear()
        time.sleep(1.0)  # twenty poll intervals with the only thread busy
        assert len(looks) <= 3, f"the claim loop turned {len(looks)} times in 1 s"
        adapter.release.set()
        assert wait_for_run(app, run_id, timeout=15).status == "succeeded"
    finally:
        adapter.release.set()
        worker.stop(wait=True)
        db.state(worker_app).dispose()
