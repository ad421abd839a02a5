"""/metrics: off without a token, token-protected, and its numbers match the database
after real runs (counts by model, adapter and errorCode, money, histograms, queue,
webhooks); provider requests and worker slots are counted in process."""
from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from runbase_web import metrics
from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, Run, WebhookAttempt, WebhookDelivery, utcnow
from tests.conftest import wait_for_run
from tests.fakes import openai as fake_openai
from tests.fakes.server import FakeServer, FakeState

TOKEN = "metrics-token-for-tests"
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample at /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    """One sample's value (0 when absent: Prometheus shows no series for no events)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def create(client, auth, model="local/test", **input_) -> str:
    input_.setdefault("prompt", "metrics")
    response = client.post("/api/v1/runs", json={"model": model, "input": input_}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_metrics_are_off_without_a_token(client):
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_token(app, client):
    app.config["METRICS_TOKEN"] = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers=SCRAPE).status_code == 200


def test_numbers_match_the_database_after_runs(app, client, auth, worker):
    app.config["METRICS_TOKEN"] = TOKEN
    succeeded = [create(client, auth, model="local/sketch") for _ in range(2)]
    failed = create(client, auth, outcome="fail")
    for run_id in [*succeeded, failed]:
        wait_for_run(app, run_id)
    worker.stop(wait=True)  # what is left stays pending: the queue metrics see it
    waiting = create(client, auth, delay_ms=0)
    canceled = create(client, auth, delay_ms=0)
    assert client.post(f"/api/v1/runs/{canceled}/cancel", headers=auth).status_code == 200

    samples = scrape(client)
    assert value(samples, "runbase_runs_created_total", model="local/sketch") == 2
    assert value(samples, "runbase_runs_created_total", model="local/test") == 3
    assert value(samples, "runbase_runs_succeeded_total", model="local/sketch", adapter="local") == 2
    assert value(samples, "runbase_runs_failed_total", model="local/test", adapter="local",
                 error_code="provider_error") == 1
    assert value(samples, "runbase_runs_failed_total", model="local/test", adapter="none",
                 error_code="canceled") == 1
    assert value(samples, "runbase_runs_active", model="local/test", status="pending") == 1
    assert value(samples, "runbase_oldest_due_run_age_seconds") > 0
    with app.app_context():
        sums = dict(db.session.execute(select(LedgerEntry.kind, func.sum(LedgerEntry.amount_micros))
                                       .group_by(LedgerEntry.kind)).all())
        ended = db.session.scalar(select(func.count()).select_from(Run)
                                  .where(Run.completed_at.is_not(None)))
        started = db.session.scalar(select(func.count()).select_from(Run)
                                    .where(Run.started_at.is_not(None)))
    assert value(samples, "runbase_charged_micros_total") == -sums["charge"] == 2 * 1000 + 3 * 100
    assert value(samples, "runbase_refunded_micros_total") == sums["refund"] == 200
    assert sum(v for (name, _l), v in samples.items()
               if name == "runbase_run_duration_seconds_count") == ended == 4
    assert value(samples, "runbase_run_duration_seconds_bucket", model="local/sketch",
                 status="succeeded", le="+Inf") == 2
    assert value(samples, "runbase_run_duration_seconds_bucket", model="local/sketch",
                 status="succeeded", le="1800.0") == 2
    assert sum(v for (name, _l), v in samples.items()
               if name == "runbase_run_queue_wait_seconds_count") == started == 3
    assert value(samples, "runbase_run_queue_wait_seconds_sum", model="local/sketch") >= 0
    assert waiting  # pending, counted above


def test_webhook_deliveries_by_outcome(app, client, auth, user):
    app.config["METRICS_TOKEN"] = TOKEN
    run_id = create(client, auth)
    with app.app_context():
        for index, (status, codes) in enumerate((("delivered", [500, 200]), ("failed", [None]),
                                                 ("pending", [404]))):
            delivery = WebhookDelivery(id=f"msg_{index}", run_id=run_id, user_id=user.id,
                                       url="https://example.com/hook", payload="{}",
                                       status=status, next_attempt_at=utcnow())
            db.session.add(delivery)
            db.session.flush()
            for code in codes:
                db.session.add(WebhookAttempt(delivery_id=delivery.id, status_code=code))
        db.session.commit()
    samples = scrape(client)
    assert value(samples, "runbase_webhook_deliveries_total", outcome="delivered") == 1
    assert value(samples, "runbase_webhook_deliveries_total", outcome="failed") == 1
    assert value(samples, "runbase_webhook_deliveries_pending") == 1
    assert value(samples, "runbase_webhook_attempts_total", outcome="success") == 1
    assert value(samples, "runbase_webhook_attempts_total", outcome="http_error") == 2
    assert value(samples, "runbase_webhook_attempts_total", outcome="no_answer") == 1


def test_provider_requests_and_worker_slots_are_counted_in_process(app_config, app, client,
                                                                   auth, worker):
    state = FakeState()
    server = FakeServer(fake_openai.make_app(state)).start()
    try:
        app.config["PROVIDER_ENV"] = {"OPENAI_API_KEY": "sk-test",
                                      "OPENAI_BASE_URL": server.url + "/v1"}
        app.config["METRICS_TOKEN"] = TOKEN
        metrics.track_worker(worker)
        state.script["images"].append(fake_openai.error(500, "boom"))
        before = scrape(client)
        run_id = create(client, auth, model="openai/gpt-image-1")
        assert wait_for_run(app, run_id, timeout=30).status == "succeeded"
        after = scrape(client)
    finally:
        server.stop()
    name = "runbase_provider_request_duration_seconds_count"
    for outcome, expected in (("ok", 1), ("server_error", 1)):
        labels = {"provider": "openai", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == expected
    assert value(after, "runbase_worker_slots") >= 4
    assert value(after, "runbase_worker_busy_slots") >= 0


def test_a_standalone_worker_serves_its_own_metrics():
    server = metrics.serve_worker_metrics(("127.0.0.1", 0), TOKEN)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        assert requests.get(url, timeout=5).status_code == 401
        answer = requests.get(url, headers=SCRAPE, timeout=5)
        assert answer.status_code == 200 and "runbase_worker_busy_slots" in answer.text
        assert "runbase_runs_created" not in answer.text  # the database's are the web's
    finally:
        server.shutdown()
