"""PostgreSQL goes away under load and comes back: every answer keeps the API's JSON
envelope (503 service_unavailable with Retry-After while it is down, never a bare HTML
500), the server recovers without a restart, and no money is lost.

The test runs its own PostgreSQL cluster, since it stops it; the rest of the suite's
server is never touched.
"""
from __future__ import annotations

import threading
import time

import psycopg
import pytest
import requests
from sqlalchemy import text

from runbase_web.extensions import db
from runbase_web.services import ledger
from tests.support.postgres import available

pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL is not installed")

SKETCH = {"model": "local/sketch", "input": {"prompt": "a lighthouse"}}
OUTAGE_SECONDS = 2.0


@pytest.fixture
def database_url(private_pg, request):
    """A database of this module's own, on a server the test may stop."""
    name = "outage_" + request.node.name.removeprefix("test_")[:40]
    return private_pg.create_database(name)


def _hammer(base: str, auth: dict, run_id: str, stop: threading.Event, answers: list) -> None:
    """Creates and reads runs until told to stop; records (time, status, headers, body)."""
    session = requests.Session()
    while not stop.is_set():
        for method, url, body in (("POST", f"{base}/api/v1/runs", SKETCH),
                                  ("GET", f"{base}/api/v1/runs/{run_id}", None)):
            response = session.request(method, url, json=body, headers=auth, timeout=30)
            answers.append((time.monotonic(), response.status_code, response.headers, response.text))
        time.sleep(0.01)


def test_outage_answers_with_the_envelope_and_recovers(app, http_server, auth, user, private_pg):
    run_id = requests.post(f"{http_server}/api/v1/runs", json=SKETCH, headers=auth,
                           timeout=30).json()["id"]
    stop, answers = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(http_server, auth, run_id, stop, answers))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    private_pg.pause()
    time.sleep(OUTAGE_SECONDS)
    private_pg.resume()
    back_at = time.monotonic()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    statuses = {status for _t, status, _h, _b in answers}
    assert statuses <= {200, 201, 503}, statuses
    unavailable = [(headers, body) for _t, status, headers, body in answers if status == 503]
    assert unavailable, "the outage was never seen"
    for headers, body in unavailable:
        assert headers["Content-Type"] == "application/json"
        assert requests.models.complexjson.loads(body)["error"]["code"] == "service_unavailable"
        assert int(headers["Retry-After"]) >= 1
    # Recovered without a restart: within a second of PostgreSQL's return, all is well.
    late = [status for at, status, _h, _b in answers if at > back_at + 1.0]
    assert late and set(late) <= {200, 201}, late
    with app.app_context():
        assert ledger.invariant_violations(db.session) == []


def test_teardown_survives_a_connection_killed_mid_request(app, private_pg):
    with app.app_context():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        database = db.engine.url.database
        with psycopg.connect(private_pg.conninfo(database), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Leaving the context closes the session: its ROLLBACK meets a dead connection.
    with app.app_context():  # and the next request gets a working connection
        assert db.session.execute(text("SELECT 1")).scalar_one() == 1
