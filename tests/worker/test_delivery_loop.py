"""The webhook delivery loop claims only when a delivery can be due: one this process
queued, a retry whose time has come, or, for deliveries other processes queued, a slow
sweep. An idle loop, or one beside runs without webhooks, runs no claim transaction."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

from runbase_web import create_app
from runbase_web.extensions import db
from runbase_web.worker import Worker, webhook_delivery
from tests.conftest import wait_for_run
from tests.support.waiting import wait_for
from tests.webhooks import Receiver, account_secret, attempts_of, wait_for_delivery

#: Longer than any test here: only a hint or the sweep can explain a claim.
LONG = 60


@pytest.fixture
def app_config():
    """The receivers listen on 127.0.0.1."""
    return {"FETCH_ALLOW_LOOPBACK": True}


@pytest.fixture
def receiver(app, user):
    running = Receiver(secret=account_secret(app, user.id)).start()
    yield running
    running.stop()


class DeliveryClaims:
    """Counts the delivery loop's claim statements on one engine."""

    def __init__(self, engine):
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement, *_args):
        if "FROM webhook_deliveries" in statement and "ORDER BY webhook_deliveries.next_attempt_at" in statement:
            with self._lock:
                self.count += 1


@pytest.fixture
def standalone(app):
    """Factory: a worker in an app of its own (as `flask --app app worker` runs), with
    its delivery claims counted."""
    started = []

    def start(poll: float = LONG) -> tuple[Worker, DeliveryClaims]:
        worker_app = create_app({**app.config, "WORKER_POLL_SECONDS": poll})
        claims = DeliveryClaims(db.state(worker_app).engine)
        worker = Worker(worker_app, threads=2).start()
        started.append(worker)
        return worker, claims
    yield start
    for worker in started:
        worker.stop(wait=True)
        db.state(worker.app).dispose()


def _create(client, auth, webhook: str | None = None, **input_) -> str:
    body = {"model": "local/test", "input": {"prompt": "hook", **input_}}
    if webhook:
        body["webhook"] = webhook
    response = client.post("/api/v1/runs", json=body, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_an_idle_loop_claims_nothing_between_sweeps(app, standalone, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "SWEEP_SECONDS", LONG)
    worker, claims = standalone(poll=0.1)  # the run loop polls; deliveries have no reason
    assert wait_for(lambda: claims.count >= 1, timeout=5)  # the sweep at start (restarts)
    time.sleep(1.5)
    assert claims.count == 1


def test_runs_without_webhooks_cost_no_delivery_claim(app, client, auth, standalone, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "SWEEP_SECONDS", LONG)
    worker, claims = standalone()
    assert wait_for(lambda: claims.count >= 1, timeout=5)
    ids = [_create(client, auth, outcome=outcome) for outcome in ("succeed", "fail", "succeed")]
    worker.wake()
    for run_id in ids:
        wait_for_run(app, run_id)
    time.sleep(0.5)
    assert claims.count == 1


def test_a_run_this_worker_ends_has_its_webhook_sent_at_once(app, client, auth, receiver,
                                                             standalone, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "SWEEP_SECONDS", LONG)
    worker, _claims = standalone()
    time.sleep(0.5)  # past the first sweep
    run_id = _create(client, auth, receiver.url)
    worker.wake()
    receiver.wait_for(1, timeout=10)
    assert wait_for_delivery(app, run_id).status == "delivered"


def test_a_delivery_queued_by_another_process_goes_out_within_the_sweep(
        app, client, auth, receiver, standalone, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "SWEEP_SECONDS", 1.0)
    run_id = _create(client, auth, receiver.url, delay_ms=60_000)
    worker, _claims = standalone(poll=0.5)  # the sweep is never shorter than the poll
    wait_for_run(app, run_id, until=("processing",))
    time.sleep(0.3)  # the worker is idle now, its first sweep done
    response = client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth)  # the web process
    assert response.get_json()["errorCode"] == "canceled"
    started = time.monotonic()
    [got] = receiver.wait_for(1, timeout=10)
    assert time.monotonic() - started < 4  # one sweep, with room for a loaded machine
    assert got.json["errorCode"] == "canceled"


def test_a_retry_goes_out_at_its_due_time(app, client, auth, receiver, standalone, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "SWEEP_SECONDS", LONG)
    monkeypatch.setattr(webhook_delivery, "RETRY_SCHEDULE", (0.3,))
    receiver.script.extend([500, 200])
    worker, _claims = standalone()
    run_id = _create(client, auth, receiver.url)
    worker.wake()
    got = receiver.wait_for(2, timeout=10)
    assert [r.status for r in got] == [500, 200]
    delivery = wait_for_delivery(app, run_id)
    first, second = attempts_of(app, delivery.id)
    gap = (second.attempted_at - first.attempted_at).total_seconds()
    assert 0.3 * webhook_delivery.JITTER[0] - 0.05 <= gap < 5


def test_a_cancel_in_this_process_sends_its_webhook_promptly(app, client, auth, receiver,
                                                             monkeypatch):
    """The embedded worker: the cancel's wake-up looks for due deliveries in the run
    claim's transaction, and the delivery loop claims only when it found one."""
    from runbase_web.state import WORKER

    monkeypatch.setattr(webhook_delivery, "SWEEP_SECONDS", LONG)
    app.config["WORKER_POLL_SECONDS"] = LONG
    app.extensions[WORKER] = Worker(app, threads=2).start()
    run_id = _create(client, auth, receiver.url, delay_ms=60_000)
    wait_for_run(app, run_id, until=("processing",))
    time.sleep(0.3)
    client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth)
    [got] = receiver.wait_for(1, timeout=5)
    assert got.json["errorCode"] == "canceled"
