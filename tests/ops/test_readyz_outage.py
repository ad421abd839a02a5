"""/readyz follows PostgreSQL: 503 while a private server is down, 200 once it is back,
without a restart. The server is this module's own, since the test stops it."""
from __future__ import annotations

import time

import psycopg
import pytest

from tests.support.postgres import available

pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL is not installed")


@pytest.fixture
def database_url(private_pg):
    """A database on a server the test may stop."""
    return private_pg.create_database("readyz_outage")


def _readyz_until(client, status: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_readyz_is_503_while_postgresql_is_down_and_200_after(app, client, private_pg):
    assert client.get("/readyz").status_code == 200
    # The test server runs with synchronous_commit off: write the migrations out before
    # the abrupt stop, or the schema the app just created could be lost with it.
    with psycopg.connect(private_pg.conninfo("readyz_outage"), autocommit=True) as admin:
        admin.execute("CHECKPOINT")
    private_pg.pause()
    try:
        started = time.monotonic()
        down = client.get("/readyz")
        assert time.monotonic() - started < 3  # bounded, whatever the database does
        assert client.get("/healthz").status_code == 200  # liveness ignores the database
    finally:
        private_pg.resume()
    assert down.status_code == 503
    database = down.get_json()["checks"]["database"]
    assert database["ok"] is False and database["detail"].startswith("unreachable")
    assert str(private_pg.port) not in down.get_data(as_text=True)
    back = _readyz_until(client, 200)
    assert back.status_code == 200, back.get_json()
