"""The worker: failures and refunds, deadlines, wake-on-create, retries, crash recovery."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from runbase_web.extensions import db
from runbase_web.models import EntryKind, LedgerEntry, Run, User
from runbase_web.providers import registry
from runbase_web.providers.base import Done, Output, ProviderError
from runbase_web.providers.local import LocalAdapter
from tests.conftest import wait_for_run

REPO = Path(__file__).resolve().parents[2]


def create(client, auth, model="local/test", **input_):
    input_.setdefault("prompt", "worker test")
    response = client.post("/api/v1/runs", json={"model": model, "input": input_}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def entries(app, run_id):
    with app.app_context():
        return sorted((e.kind, e.amount_micros) for e in db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.run_id == run_id)))


def balance(app, user):
    with app.app_context():
        return db.session.get(User, user.id).balance_micros


def test_failing_run_is_failed_and_refunded(app, client, auth, user, worker):
    run = create(client, auth, outcome="fail")
    wait_for_run(app, run["id"])
    body = client.get(f"/api/v1/runs/{run['id']}", headers=auth).get_json()
    assert body["status"] == "failed" and body["errorCode"] == "provider_error"
    assert "outcome=fail" in body["error"] and body["output"] is None
    assert entries(app, run["id"]) == [("charge", -100), ("refund", 100)]
    assert balance(app, user) == 1_000_000


def test_delayed_run_waits_without_holding_a_thread(app, client, auth, worker):
    slow = [create(client, auth, delay_ms=8000) for _ in range(6)]
    quick = create(client, auth, model="local/sketch")
    # Six slow runs on a four-thread worker: the quick one still finishes first.
    assert wait_for_run(app, quick["id"], timeout=5).status == "succeeded"
    with app.app_context():
        assert db.session.get(Run, slow[0]["id"]).status == "processing"
    for run in slow:
        assert wait_for_run(app, run["id"]).status == "succeeded"


@pytest.fixture
def short_deadline_catalog(tmp_path, app_config):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [{"id": "local/test", "deadline_seconds": 2}]}))
    app_config["CATALOG_PATH"] = str(path)


def test_timeout_past_deadline_fails_and_refunds(short_deadline_catalog, app, client, auth, user, worker):
    started = time.monotonic()  # before the create: the deadline counts from creation
    run = create(client, auth, outcome="timeout")
    done = wait_for_run(app, run["id"], timeout=15)
    assert done.status == "failed" and done.error_code == "timeout"
    assert 1.5 < time.monotonic() - started < 10
    assert "2 s deadline" in done.error
    assert entries(app, run["id"]) == [("charge", -100), ("refund", 100)]
    assert balance(app, user) == 1_000_000


def test_the_adapter_a_run_starts_with_is_recorded(app, client, auth, worker):
    run = create(client, auth, model="local/sketch")
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded" and done.adapter == "local"


def test_a_run_not_started_has_no_adapter_yet(app, client, auth):
    run = create(client, auth, model="local/sketch")  # no worker here
    with app.app_context():
        assert db.session.get(Run, run["id"]).adapter is None


def test_create_wakes_an_idle_embedded_worker(app_config, app, client, auth):
    # With a 30 s poll, only the wake-up on create can start the run quickly.
    from runbase_web.state import WORKER
    from runbase_web.worker import Worker
    app.config["WORKER_POLL_SECONDS"] = 30
    app.extensions[WORKER] = Worker(app, threads=2).start()
    time.sleep(0.3)  # let the loop go idle
    run = create(client, auth, model="local/sketch")
    done = wait_for_run(app, run["id"], timeout=20)
    # Well under a second on a quiet machine; half the poll still rules the poll out.
    assert (done.started_at - done.created_at).total_seconds() < 15


class FlakyAdapter:
    """Fails with a retryable error `failures` times, then returns one PNG."""

    def __init__(self, failures: int, retry_after: float | None = 0.1, retryable: bool = True):
        self.failures, self.calls = failures, 0
        self.retry_after, self.retryable = retry_after, retryable

    def start(self, job):
        self.calls += 1
        if self.calls <= self.failures:
            raise ProviderError("upstream said 503", retryable=self.retryable,
                                retry_after=self.retry_after)
        return Done([Output("image/png", LocalAdapter().start(job).outputs[0].data)])

    def poll(self, job):
        raise AssertionError("sync adapter is never polled")

    def cancel(self, job):
        pass


def use_adapter(monkeypatch, adapter):
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for", lambda spec, env: adapter)


def test_retryable_error_is_retried_then_succeeds_with_one_charge(app, client, auth, user, worker, monkeypatch):
    adapter = FlakyAdapter(failures=2)
    use_adapter(monkeypatch, adapter)
    run = create(client, auth, model="local/sketch")
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded" and done.attempts == 3 and adapter.calls == 3
    assert entries(app, run["id"]) == [("charge", -1000)]


def test_retries_stop_at_the_attempt_limit(app, client, auth, user, worker, monkeypatch):
    adapter = FlakyAdapter(failures=99)
    use_adapter(monkeypatch, adapter)
    run = create(client, auth, model="local/sketch")
    done = wait_for_run(app, run["id"])
    assert done.status == "failed" and adapter.calls == 3  # local/sketch: max_attempts 3
    assert entries(app, run["id"]) == [("charge", -1000), ("refund", 1000)]


def test_final_error_fails_at_once(app, client, auth, worker, monkeypatch):
    adapter = FlakyAdapter(failures=99, retryable=False)
    use_adapter(monkeypatch, adapter)
    done = wait_for_run(app, create(client, auth, model="local/sketch")["id"])
    assert done.status == "failed" and adapter.calls == 1


def test_missing_adapter_fails_cleanly(app, client, auth, worker, monkeypatch):
    monkeypatch.setitem(registry.ADAPTERS, "local", ("no_such_module", "X"))
    done = wait_for_run(app, create(client, auth, model="local/sketch")["id"])
    assert done.status == "failed" and done.error_code == "model_unavailable"


def test_video_run_stores_an_mp4(app, client, auth, worker):
    run = create(client, auth, model="local/sketch-video", duration=1)
    done = wait_for_run(app, run["id"], timeout=60)
    assert done.status == "succeeded", done.error
    with client.get(done.output_urls[0]) as response:
        assert response.mimetype == "video/mp4" and response.data[4:8] == b"ftyp"


def _worker_process(app, fault: str, log) -> subprocess.Popen:
    env = dict(os.environ, RUNBASE_DATABASE_URL=app.config["DATABASE_URL"],
               RUNBASE_DATA_DIR=app.config["DATA_DIR"], RUNBASE_LEASE_SECONDS="2",
               RUNBASE_WORKER_POLL_SECONDS="0.1", RUNBASE_FAULT_HANG=fault)
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker", "--threads", "2"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_lease(app, run_id: str, timeout: float = 20) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            run = db.session.get(Run, run_id)
            if run.lease_owner and run.attempts == 1:
                return run
        time.sleep(0.05)
    raise AssertionError("the worker process never leased the run")


@pytest.mark.parametrize("fault", ["provider_call", "before_finish"])
def test_worker_killed_mid_run_is_recovered_by_another(app_config, app, client, auth, user, fault,
                                                       tmp_path):
    app_config["LEASE_SECONDS"] = 2
    app.config["LEASE_SECONDS"] = 2
    run = create(client, auth, model="local/sketch")
    log = open(tmp_path / "worker.log", "wb")
    process = _worker_process(app, fault, log)
    try:
        leased = _wait_for_lease(app, run["id"])
        time.sleep(2.5)  # longer than the lease: the heartbeat must have kept it
        with app.app_context():
            assert db.session.get(Run, run["id"]).lease_owner == leased.lease_owner
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    from runbase_web.state import WORKER
    from runbase_web.worker import Worker
    app.extensions[WORKER] = Worker(app, threads=2).start()
    done = wait_for_run(app, run["id"], timeout=20)
    assert done.status == "succeeded" and done.lease_owner is None
    assert done.attempts == 2  # the killed worker's attempt, then ours
    assert entries(app, run["id"]) == [("charge", -1000)]
