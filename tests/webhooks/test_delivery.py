"""Delivery: one signed POST per ended run, retries with backoff for 24 h, the outbound
guard, leases between racing workers (README, "Webhooks")."""
from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest

from runbase_web import net
from runbase_web.extensions import db
from runbase_web.models import utcnow
from runbase_web.state import WORKER
from runbase_web.worker import Worker, webhook_delivery
from runbase_web.worker.claim import claim_due_deliveries
from runbase_web.worker.webhook_delivery import (JITTER, LEASE_SECONDS, RETRY_SCHEDULE,
                                                 RETRY_WINDOW, attempt)
from tests.conftest import wait_for_run
from tests.webhooks import (Rejected, attempts_of, deliver_due, deliveries_of, verify,
                            wait_for_delivery)
from tests.webhooks.conftest import PUBLIC_URL


def api_run(client, auth, run_id: str) -> bytes:
    """GET /api/v1/runs/<id>, the raw body without jsonify's final newline."""
    response = client.get(f"/api/v1/runs/{run_id}", headers=auth)
    assert response.status_code == 200
    return response.data.rstrip(b"\n")


def cancel(client, auth, run_id: str) -> None:
    response = client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth)
    assert response.status_code == 200 and response.get_json()["errorCode"] == "canceled"


def test_succeeded_run_posts_the_api_run_object_signed_and_promptly(app_config, app, client, auth,
                                                                    user, receiver, create_run):
    # A 30 s poll: only the wake-up when the run ends can make the first attempt prompt.
    app.config["WORKER_POLL_SECONDS"] = 30
    app.extensions[WORKER] = Worker(app, threads=2).start()
    run = create_run(receiver.url, model="local/sketch")
    [got] = receiver.wait_for(1, timeout=10)
    done = wait_for_run(app, run["id"])
    assert done.status == "succeeded"

    assert got.rejected is None and got.status == 200
    assert got.body == api_run(client, auth, run["id"])
    assert got.json["output"]["urls"][0].startswith(PUBLIC_URL + "/files/generated/")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Runbase-Webhooks")
    assert got.message_id.startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10

    delivery = wait_for_delivery(app, run["id"])
    assert delivery.status == "delivered" and delivery.id == got.message_id
    [logged] = attempts_of(app, delivery.id)
    assert logged.status_code == 200 and logged.error is None and logged.duration_ms >= 0
    assert (logged.attempted_at - done.completed_at).total_seconds() < 5


def test_signature_verifies_with_the_standardwebhooks_package(app, user, client, auth, receiver,
                                                              create_run):
    standardwebhooks = pytest.importorskip("standardwebhooks.webhooks")
    run = create_run(receiver.url, outcome="fail")
    cancel(client, auth, run["id"])  # ended without a worker; the first attempt is ours
    assert deliver_due(app) == 1
    [got] = receiver.received
    parsed = standardwebhooks.Webhook(receiver.secret).verify(got.body, got.headers)
    assert parsed == got.json and parsed["id"] == run["id"]


def test_failed_run_delivers_too(app, client, auth, receiver, create_run, worker):
    run = create_run(receiver.url, outcome="fail")
    [got] = receiver.wait_for(1)
    assert got.rejected is None
    assert got.json["status"] == "failed" and got.json["errorCode"] == "provider_error"
    assert got.body == api_run(client, auth, run["id"])


def test_canceled_run_delivers_once(app, client, auth, receiver, create_run):
    run = create_run(receiver.url, delay_ms=60_000)
    cancel(client, auth, run["id"])
    cancel(client, auth, run["id"])  # a second cancel ends nothing, so queues nothing
    assert len(deliveries_of(app, run["id"])) == 1
    assert deliver_due(app) == 1
    assert deliver_due(app) == 0
    [got] = receiver.received
    assert got.rejected is None and got.json["errorCode"] == "canceled"
    assert got.body == api_run(client, auth, run["id"])


def test_run_without_webhook_queues_nothing(app, client, auth, worker):
    response = client.post("/api/v1/runs", headers=auth,
                           json={"model": "local/sketch", "input": {"prompt": "no hook"}})
    run = wait_for_run(app, response.get_json()["id"])
    assert run.status == "succeeded" and deliveries_of(app, run.id) == []


def test_failing_receiver_is_retried_with_backoff_and_each_attempt_logged(
        app, client, auth, receiver, create_run, worker, monkeypatch):
    # The last pause is long enough that a late first retry on a busy machine (0.6 s
    # late was seen) cannot look longer than it: the pauses visibly grow.
    schedule = (0.2, 0.4, 2.0)
    monkeypatch.setattr(webhook_delivery, "RETRY_SCHEDULE", schedule)
    receiver.script.extend([500, 503, 302, 200])
    run = create_run(receiver.url, model="local/sketch")
    got = receiver.wait_for(4, timeout=20)
    delivery = wait_for_delivery(app, run["id"])

    assert [r.status for r in got] == [500, 503, 302, 200]
    assert all(r.rejected is None for r in got)
    assert {r.message_id for r in got} == {delivery.id}  # the id is the same on every retry
    assert len({r.body for r in got}) == 1
    assert delivery.status == "delivered" and delivery.attempts == 4

    logged = attempts_of(app, delivery.id)
    assert [a.status_code for a in logged] == [500, 503, 302, 200]
    gaps = [(b.attempted_at - a.attempted_at).total_seconds() for a, b in zip(logged, logged[1:])]
    # Each pause is at least the schedule's value less the jitter, and they grow.
    for gap, planned in zip(gaps, schedule):
        assert gap >= planned * JITTER[0] - 0.05, gaps
    assert gaps[2] > gaps[0]


def test_receiver_that_never_succeeds_fails_after_24_hours(app, client, auth, receiver, create_run):
    receiver.script.extend([500] * 100)
    run = create_run(receiver.url, delay_ms=60_000)
    cancel(client, auth, run["id"])
    start = utcnow()
    assert deliver_due(app, now=start) == 1
    [delivery] = deliveries_of(app, run["id"])
    times = [start]
    while delivery.status == "pending":
        due = delivery.next_attempt_at
        # Not a moment before it is due.
        assert deliver_due(app, now=due - timedelta(seconds=1)) == 0
        assert deliver_due(app, now=due) == 1
        times.append(due)
        [delivery] = deliveries_of(app, run["id"])
        assert len(times) < 40

    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert times[-1] == start + RETRY_WINDOW  # one last try exactly when the window closes
    waits = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    for index, wait in enumerate(waits[:len(RETRY_SCHEDULE)]):
        planned = RETRY_SCHEDULE[index]
        assert planned * JITTER[0] <= wait <= planned * JITTER[1], (index, wait)
    assert max(waits) <= RETRY_SCHEDULE[-1] * JITTER[1]
    logged = attempts_of(app, delivery.id)
    assert len(logged) == len(times) == delivery.attempts == len(receiver.received)
    assert all(a.status_code == 500 for a in logged)
    # Nothing more, however long we wait.
    assert deliver_due(app, now=start + 2 * RETRY_WINDOW) == 0


def test_gone_receiver_stops_retries_at_once(app, client, auth, receiver, create_run):
    receiver.script.append(410)
    run = create_run(receiver.url, delay_ms=60_000)
    cancel(client, auth, run["id"])
    deliver_due(app)
    [delivery] = deliveries_of(app, run["id"])
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "410" in attempts_of(app, delivery.id)[0].error


@pytest.fixture
def connections(monkeypatch):
    """Every address the guarded fetcher connects to (a socket spy)."""
    seen = []
    original = net._connect

    def spy(targets, timeout, options):
        seen.extend(sockaddr for _family, sockaddr in targets)
        return original(targets, timeout, options)
    monkeypatch.setattr(net, "_connect", spy)
    return seen


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "https://10.0.0.1/hook",
    "http://[fd00::1]/hook",
    "http://2130706433/hook",
    "https://hooks.rebind.example/hook",  # DNS says 10.1.2.3: refused after resolution
])
def test_private_and_metadata_webhooks_are_refused_by_the_guard_and_logged(
        app_config, app, client, auth, create_run, connections, monkeypatch, url):
    app.config["FETCH_ALLOW_LOOPBACK"] = False  # production policy
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host == "hooks.rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)
    monkeypatch.setattr(net.socket, "getaddrinfo", resolver)

    run = create_run(url, delay_ms=60_000)
    cancel(client, auth, run["id"])
    assert deliver_due(app) == 1
    [delivery] = deliveries_of(app, run["id"])
    [logged] = attempts_of(app, delivery.id)
    assert connections == []
    assert logged.status_code is None
    assert logged.error.startswith("Refused by the outbound guard:")
    # A refused address fails at once: retrying would only keep probing inside.
    assert delivery.status == "failed" and deliver_due(app, now=utcnow() + timedelta(hours=1)) == 0


def test_unreachable_receiver_is_retried(app, client, auth, create_run):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket closes
    run = create_run(f"http://127.0.0.1:{port}/hook", delay_ms=60_000)
    cancel(client, auth, run["id"])
    deliver_due(app)
    [delivery] = deliveries_of(app, run["id"])
    [logged] = attempts_of(app, delivery.id)
    assert delivery.status == "pending" and delivery.next_attempt_at > logged.attempted_at
    assert logged.status_code is None and "Could not reach 127.0.0.1" in logged.error


def test_two_workers_racing_post_each_run_exactly_once(app, client, auth, receiver, create_run):
    receiver.delay = 0.2  # slow answers keep claims open while the other worker looks
    workers = [Worker(app, threads=2).start() for _ in range(2)]
    try:
        created = [create_run(receiver.url, model="local/sketch") for _ in range(6)]
        for worker in workers:
            worker.wake()
        receiver.wait_for(6, timeout=20)
        for run in created:
            wait_for_delivery(app, run["id"])
        time.sleep(0.5)  # a duplicate would arrive now
    finally:
        for worker in workers:
            worker.stop()
    assert len(receiver.received) == 6
    assert sorted(r.json["id"] for r in receiver.received) == sorted(r["id"] for r in created)
    for run in created:
        [delivery] = deliveries_of(app, run["id"])
        assert delivery.attempts == 1 and len(attempts_of(app, delivery.id)) == 1


def test_concurrent_claims_never_share_a_delivery(app, client, auth, create_run):
    for _ in range(12):
        run = create_run("https://hooks.example.org/hook", delay_ms=60_000)
        cancel(client, auth, run["id"])
    barrier = threading.Barrier(4)
    claimed: list[list[str]] = []

    def claimer():
        with app.app_context():
            barrier.wait()
            ids = [i for i, _lease in claim_due_deliveries(db.session, 5, LEASE_SECONDS)]
            claimed.append(ids)
            db.state(app).session.remove()
    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    everything = [i for ids in claimed for i in ids]
    assert len(claimed) == 4 and len(everything) == 12 and len(set(everything)) == 12


def test_a_claim_whose_lease_expired_cannot_send_or_record(app, client, auth, receiver, create_run):
    run = create_run(receiver.url, delay_ms=60_000)
    cancel(client, auth, run["id"])
    start = utcnow()
    with app.app_context():
        [(delivery_id, stale)] = claim_due_deliveries(db.session, 5, LEASE_SECONDS, at=start)
        later = start + timedelta(seconds=LEASE_SECONDS + 1)
        [(_same, current)] = claim_due_deliveries(db.session, 5, LEASE_SECONDS, at=later)
    attempt(app, delivery_id, stale)  # the stalled worker wakes up: it must not POST
    assert receiver.received == []
    attempt(app, delivery_id, current)
    assert len(receiver.received) == 1
    assert deliveries_of(app, run["id"])[0].status == "delivered"


def test_receiver_rejects_a_tampered_delivery(app, client, auth, receiver, create_run):
    """The verifying receiver is not a rubber stamp: a wrong secret gets 401 and a retry."""
    receiver.secret = "whsec_" + "A" * 43 + "="
    run = create_run(receiver.url, delay_ms=60_000)
    cancel(client, auth, run["id"])
    deliver_due(app)
    [got] = receiver.received
    assert got.status == 401 and got.rejected == "no valid signature"
    with pytest.raises(Rejected):
        verify(receiver.secret, got.headers, got.body)
    assert deliveries_of(app, run["id"])[0].status == "pending"

