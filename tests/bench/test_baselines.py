"""The benchmarks' reference apps answer what they stand for: the one-read app
(bench/baselines/one_select_app.py) returns its one row on each database, so a ratio
against it compares Runbase with a real read, not with an error page."""
from __future__ import annotations

import pytest

from tests.bench import modules as bench_modules


@pytest.fixture(scope="module")
def one_select_app():
    """bench/baselines/one_select_app.py."""
    module = bench_modules.load("baselines/one_select_app.py")
    yield module
    bench_modules.unload(module)


@pytest.fixture(params=["sqlite", "postgresql"])
def reference_url(request, tmp_path):
    """A database of its own for the reference app: a new SQLite file, or a new database
    on the tests' PostgreSQL server (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/one-select.db"
        return
    server = request.getfixturevalue("pg_server")
    yield server.create_database("one_select_reference")
    server.drop_database("one_select_reference")


def test_the_one_read_app_returns_its_row_and_404_for_any_other(one_select_app,
                                                                 reference_url):
    one_select_app.init_schema(reference_url)
    one_select_app.init_schema(reference_url)  # again, as each benchmark run does
    app = one_select_app.create_app(reference_url)
    client = app.test_client()
    try:
        _check_answers(client)
    finally:
        app.extensions["one_select_reader"].close()


def _check_answers(client) -> None:
    for _ in range(6):  # past psycopg's threshold, so the prepared statement is read too
        answer = client.get("/runs/run_bench")
        assert answer.status_code == 200
        assert answer.get_json() == {"id": "run_bench", "model": "local/sketch",
                                     "status": "succeeded", "costUsd": 1000,
                                     "createdAt": "2026-11-27T00:00:00Z"}
    missing = client.get("/runs/run_other")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
