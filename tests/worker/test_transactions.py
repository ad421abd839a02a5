"""What the worker costs the database per run: transactions (BEGINs) counted on a
standalone worker's own engine, so the web app's creates are not in the figures.

A sync run is one claim and one finish; a poll that stays pending is its release plus
its share of a claim; a run without a webhook costs no delivery claim at all.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

from runbase_web import create_app
from runbase_web.extensions import db
from runbase_web.providers.base import Done, Output, Pending
from runbase_web.worker import Worker
from tests.conftest import wait_for_run
from tests.fakes.replicate import tiny_png

SKETCH = {"model": "local/sketch", "input": {"prompt": "counted"}}
#: Longer than any test here: no idle poll may add a transaction to the counts.
POLL_SECONDS = 60


class TransactionCounter:
    """Counts BEGINs and COMMITs on one engine, from every thread."""

    def __init__(self, engine):
        self.begins = self.commits = 0
        self._lock = threading.Lock()
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)

    def _begin(self, _connection):
        with self._lock:
            self.begins += 1

    def _commit(self, _connection):
        with self._lock:
            self.commits += 1

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.begins = self.commits = 0

    def settle(self, quiet: float = 0.6, timeout: float = 10.0) -> int:
        """Wait until no transaction began for `quiet` seconds; returns the BEGIN count."""
        deadline = time.monotonic() + timeout
        seen, since = self.begins, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if self.begins != seen:
                seen, since = self.begins, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return self.begins


class PollingAdapter:
    """An async provider whose job stays pending for `polls` polls, `wait` seconds apart,
    then gives one PNG."""

    def __init__(self, polls: int, wait: float = 0.05, poll_seconds: float = 0.0):
        self.polls, self.wait, self.poll_seconds = polls, wait, poll_seconds
        self.calls: list[str] = []
        self.polled = threading.Event()

    def start(self, job):
        self.calls.append("start")
        return Pending(f"job-{job.run_id}", 0.05, {"polls": 0})

    def poll(self, job):
        self.calls.append("poll")
        self.polled.set()
        time.sleep(self.poll_seconds)  # the provider taking its time to answer
        done = job.upstream_state["polls"] + 1
        if done <= self.polls:
            return Pending(job.upstream_id, self.wait, {"polls": done})
        return Done([Output("image/png", tiny_png())])

    def cancel(self, job):
        pass


@pytest.fixture
def counted_worker(app):
    """A worker in an app of its own (as `flask --app app worker` runs) with a counter on
    its engine; idle polls are too rare to show up in a test."""
    worker_app = create_app({**app.config, "WORKER_POLL_SECONDS": POLL_SECONDS})
    counter = TransactionCounter(db.state(worker_app).engine)
    worker = Worker(worker_app, threads=4).start()
    counter.settle()  # its first claims, and the listener's first look on PostgreSQL
    counter.reset()
    yield worker, counter
    worker.stop(wait=True)
    db.state(worker_app).dispose()


def _create(client, auth, body) -> str:
    response = client.post("/api/v1/runs", json=body, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _tell(worker) -> None:
    """What tells a standalone worker of a new run: NOTIFY on PostgreSQL (its listener),
    and here, for SQLite, a direct wake-up standing in for its next poll."""
    if db.state(worker.app).engine.dialect.name != "postgresql":
        worker.wake()


def test_a_sync_run_costs_a_claim_and_a_finish(app, client, auth, counted_worker):
    worker, counter = counted_worker
    run_id = _create(client, auth, SKETCH)
    _tell(worker)
    assert wait_for_run(app, run_id).status == "succeeded"
    total = counter.settle()
    print(f"sync run: {total} transactions ({counter.commits} commits)")
    assert total <= 2


@pytest.mark.parametrize("polls", [5])
def test_a_pending_poll_costs_one_release_and_its_claim(app, client, auth, counted_worker,
                                                        monkeypatch, polls):
    worker, counter = counted_worker
    adapter = PollingAdapter(polls)
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, context: adapter)
    run_id = _create(client, auth, {"model": "local/test", "input": {"prompt": "counted"}})
    _tell(worker)
    assert wait_for_run(app, run_id).status == "succeeded"
    total = counter.settle()
    assert adapter.calls == ["start"] + ["poll"] * (polls + 1)
    steps = polls + 2  # the start, the polls that stay pending, the poll that ends it
    print(f"async run with {polls} pending polls: {total} transactions, "
          f"{total / steps:.1f} per step")
    # The start's claim and its job id; then one claim per poll, which also writes the
    # previous poll back; and the finish.
    assert total <= 2 + (polls + 1) + 1
