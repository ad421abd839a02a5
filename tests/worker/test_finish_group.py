"""Writing succeeded runs with the next claim (worker/finish_group.py) and queueing runs
ahead of free threads: the runs handed over by then are written in the claim's own
transaction, each ends exactly once with its files recorded, one run's failed write
never fails another's or the claims, and a worker stopping gives back the runs it had
only queued."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import delete, func, select, update

from runbase_web import create_app, state
from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, Run, RunStatus, StoredFile, WebhookDelivery
from runbase_web.services import files, runs
from runbase_web.providers.base import Done, Output
from runbase_web.worker import Worker, runner
from runbase_web.worker import listener as listener_module
from runbase_web.worker.claim import claim_work, give_back_leases
from runbase_web.worker.finish_group import Finished
from tests.conftest import wait_for_run
from tests.fakes.replicate import tiny_png
from tests.support.waiting import wait_for
from tests.worker.test_claim_loop import BlockingAdapter, _create, _runs
from tests.worker.test_transactions import TransactionCounter


def _claimed(app, client, auth, count: int) -> list[str]:
    ids = _create(client, auth, count)
    claim = claim_work(app, "owner-a", count, 60)
    assert sorted(run.id for run in claim.runs) == sorted(ids)
    return ids


def _saved(app, run_id: str) -> Finished:
    with app.app_context():
        row = files.save_output(state.storage(app), user_id=_owner(app, run_id),
                                run_id=run_id, data=tiny_png(), content_type="image/png")
    return Finished(run_id, [row])


def _owner(app, run_id: str) -> int:
    with app.app_context():
        return db.session.get(Run, run_id).user_id


def test_succeeded_runs_are_written_in_the_next_claims_transaction(app, client, auth):
    ids = _claimed(app, client, auth, 12)
    finished = [_saved(app, run_id) for run_id in ids]
    waiting = _create(client, auth, 3)
    counter = TransactionCounter(db.state(app).engine)
    claim = claim_work(app, "owner-a", 3, 60, finished=finished)
    assert counter.commits == 1
    assert claim.ended == [True] * len(ids)
    assert sorted(run.id for run in claim.runs) == sorted(waiting)  # the freed threads' next
    with app.app_context():
        for item in finished:
            run = db.session.get(Run, item.run_id)
            assert run.status == RunStatus.SUCCEEDED.value
            assert run.output_urls == [files.url_path(row) for row in item.rows]
        assert db.session.scalar(select(func.count()).select_from(StoredFile)) == len(ids)
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                 .where(LedgerEntry.kind == "refund")) == 0


def test_a_run_that_ended_meanwhile_is_not_succeeded_and_its_files_go(app, client, auth):
    ended, live = _claimed(app, client, auth, 2)
    with app.app_context():
        assert runs.mark_failed(db.session, ended, message="Too late.", code="timeout")
        db.session.commit()
    finished = [_saved(app, ended), _saved(app, live)]
    assert claim_work(app, "owner-a", 0, 60, finished=finished).ended == [False, True]
    storage = state.storage(app)
    with app.app_context():
        assert db.session.get(Run, ended).status == RunStatus.FAILED.value
        assert db.session.scalars(select(StoredFile.run_id)).all() == [live]
    assert storage.read(finished[0].rows[0].name) is None


def test_a_batch_queues_the_webhook_of_each_run_it_ended_and_no_other(app, client, auth):
    hooked, plain, ended = _claimed(app, client, auth, 3)
    with app.app_context():
        for run_id in (hooked, ended):
            db.session.execute(update(Run).where(Run.id == run_id)
                               .values(webhook_url="https://hooks.example.com/runbase"))
        assert runs.mark_failed(db.session, ended, message="Too late.", code="timeout")
        db.session.commit()
        db.session.execute(delete(WebhookDelivery))  # the failure's own message
        db.session.commit()
    finished = [_saved(app, run_id) for run_id in (hooked, plain, ended)]
    assert claim_work(app, "owner-a", 0, 60, finished=finished).ended == [True, True, False]
    with app.app_context():
        [delivery] = db.session.scalars(select(WebhookDelivery)).all()
        assert delivery.run_id == hooked
        message = json.loads(delivery.payload)
        assert message["status"] == "succeeded"
        assert message["output"]["urls"] == [files.url_path(row) for row in finished[0].rows]


class InstantAdapter:
    """A provider call that answers one PNG at once."""

    def start(self, job):
        return Done([Output("image/png", tiny_png())])


def test_one_run_failing_its_write_does_not_fail_the_others_or_the_claims(
        app, client, auth, monkeypatch):
    ids = _create(client, auth, 8)
    broken = ids[2]
    save = files.save_output

    def save_breaking_one(storage, **fields):
        row = save(storage, **fields)
        if fields["run_id"] == broken:
            row.user_id = 10 ** 9  # no such user: its row breaks the foreign key
        return row

    monkeypatch.setattr(files, "save_output", save_breaking_one)
    worker, worker_app = _worker_calling(InstantAdapter(), app, monkeypatch)
    worker.start()
    try:
        for run_id in ids:
            if run_id != broken:
                assert wait_for_run(app, run_id, timeout=15).status == "succeeded"
        deadline = time.monotonic() + 10
        while broken in worker.held_runs():  # its write was tried alone, and failed
            assert time.monotonic() < deadline, "the broken run's write was never reported"
            time.sleep(0.02)
    finally:
        worker.stop(wait=True)
        db.state(worker_app).dispose()
    with app.app_context():
        assert db.session.get(Run, broken).status == RunStatus.PROCESSING.value  # lease expires
        assert sorted(db.session.scalars(select(StoredFile.run_id))) == sorted(
            run_id for run_id in ids if run_id != broken)


def _worker_calling(adapter, app, monkeypatch, **config) -> tuple[Worker, object]:
    """An unstarted two-thread worker, in an app of its own (`config` on top of the
    tests'), whose provider is `adapter`."""
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    worker_app = create_app({**app.config, "WORKER_POLL_SECONDS": 0.05, **config})
    return Worker(worker_app, threads=2), worker_app


def test_a_succeeded_run_waiting_to_be_written_keeps_its_lease(app, client, auth, monkeypatch):
    """Its thread has gone on, but the worker still holds it: the heartbeat renews it, so
    no other worker takes it (and calls its provider again) before it is written."""
    [run_id] = _create(client, auth, 1)
    held, let_go = threading.Event(), threading.Event()
    claim = runner.claim_work

    def slow_to_write(*args, finished=(), **kwargs):
        if finished:
            held.set()
            let_go.wait(15)
        return claim(*args, finished=finished, **kwargs)

    monkeypatch.setattr(runner, "claim_work", slow_to_write)
    worker, worker_app = _worker_calling(InstantAdapter(), app, monkeypatch, LEASE_SECONDS=2)
    worker.start()
    try:
        assert held.wait(15)
        [leased] = _runs(app, [run_id])
        time.sleep(1.5)  # two heartbeats, and most of the lease
        [waiting] = _runs(app, [run_id])
        assert waiting.status == RunStatus.PROCESSING.value
        assert waiting.lease_owner == worker.owner and waiting.lease_until > leased.lease_until
        assert run_id in worker.held_runs() and run_id not in worker.active_runs()
        let_go.set()
        assert wait_for_run(app, run_id, timeout=15).status == "succeeded"
    finally:
        let_go.set()
        worker.stop(wait=True)
        db.state(worker_app).dispose()


def test_with_a_backlog_runs_queue_ahead_and_a_stop_gives_them_back(app, client, auth,
                                                                      monkeypatch):
    adapter = BlockingAdapter()
    worker, worker_app = _worker_calling(adapter, app, monkeypatch)
    ids = _create(client, auth, 10)
    worker.start()
    try:
        assert adapter.entered.wait(15)
        # Both threads get into a call (the second may start a moment after the first);
        # with the backlog, queue_ahead more are leased.
        deadline = threading.Event()
        for _ in range(100):
            if (len(worker.active_runs()) == worker.threads + worker.queue_ahead
                    and worker.busy_slots() == worker.threads):
                break
            deadline.wait(0.05)
        assert len(worker.active_runs()) == worker.threads + worker.queue_ahead
        assert worker.busy_slots() == worker.threads
        worker.stop_claiming()
        assert len(worker.active_runs()) == worker.threads  # the queued ones are dropped
    finally:
        adapter.release.set()
        worker.stop(wait=True)
        db.state(worker_app).dispose()
    # The dropped runs are the ones it still holds: the two it started have ended.
    assert sorted(worker.never_started()) == sorted(
        run.id for run in _runs(app, ids) if run.lease_owner == worker.owner)
    with app.app_context():
        given_back = give_back_leases(db.session, worker.owner,
                                      never_started=worker.never_started())
        db.session.commit()
        found = {run.id: run for run in db.session.scalars(select(Run))}
    assert len(given_back) == worker.queue_ahead
    # Free for any worker at once: no lease, due now, never started by this one, and
    # the attempt its claim counted taken back (restarts can't use up its attempts).
    assert all(found[run_id].lease_owner is None for run_id in given_back)
    assert all(found[run_id].attempts == 0 for run_id in given_back)
    started = [run for run in found.values() if run.status == RunStatus.SUCCEEDED.value]
    assert len(started) == 2 and all(run.attempts == 1 for run in started)
    assert set(found) == set(ids)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_not_yet_listening_holds_no_new_run_back(app, client, auth, monkeypatch):
    """Until its listener has asked who leads, a worker leaves no new run for a first
    responder. If it did, with older runs filling its threads, the newer ones would be
    missing from its queue-ahead claim, so no backlog would be known, and nothing would
    be queued until a thread came free (a flaky CI failure of the test above)."""
    monkeypatch.setattr(runner, "HELPER_LAG_SECONDS", 1.0)
    asked = threading.Event()
    listen = listener_module.RunListener._listen
    monkeypatch.setattr(listener_module.RunListener, "_listen",
                        lambda self: asked.wait(30) and listen(self))
    adapter = BlockingAdapter()
    worker, worker_app = _worker_calling(adapter, app, monkeypatch)
    _create(client, auth, 2)
    time.sleep(1.2)  # older than a helper's lag
    _create(client, auth, 8)
    worker.start()
    try:
        assert worker.fresh_lag() == 0
        assert wait_for(lambda: len(worker.active_runs()) == worker.threads + worker.queue_ahead,
                        timeout=5), worker.active_runs()
    finally:
        asked.set()
        adapter.release.set()
        worker.stop(wait=True)
        db.state(worker_app).dispose()


class SlowAdapter:
    """A provider call that takes `seconds`."""

    def __init__(self, seconds: float):
        self.seconds, self.calls = seconds, 0

    def start(self, job):
        self.calls += 1
        time.sleep(self.seconds)
        return Done([Output("image/png", tiny_png())])


def test_with_long_turns_nothing_is_queued_ahead(app, client, auth, monkeypatch):
    """A run queued behind this worker's slow calls could start at once on another."""
    adapter = SlowAdapter(runner.QUEUE_AHEAD_TURN_SECONDS * 1.5)
    worker, worker_app = _worker_calling(adapter, app, monkeypatch)
    ids = _create(client, auth, 12)
    worker.start()
    try:
        while adapter.calls < 6:  # the first turns show how long turns take
            time.sleep(0.02)
        most = 0
        for _ in range(40):
            most = max(most, len(worker.active_runs()))
            time.sleep(0.02)
        assert most <= worker.threads
    finally:
        worker.stop(wait=True)
        db.state(worker_app).dispose()
    assert len(ids) == 12
