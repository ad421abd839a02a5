"""A DriverQuery answers exactly what Core's execution of the same statement answers (the
columns' types applied), on both databases, and keeps Core's behaviour around it: the
engine's statement events see it, a read runs outside a transaction, a statement it
cannot run faithfully is refused."""
from __future__ import annotations

import pytest
from sqlalchemy import bindparam, event, select, update

from runbase_web import extensions
from runbase_web.driver_query import DriverQuery
from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from runbase_web.services import runs
from tests.api.test_request_transactions import _in_transaction

SKETCH = {"model": "local/sketch", "input": {"prompt": "a lighthouse \u00e9 \u2603 \"quoted\""}}
_STATEMENT = select(*runs.PUBLIC_COLUMNS).where(Run.__table__.c.id == bindparam("run_id"))


@pytest.fixture
def run_ids(app, client, auth):
    """Runs in each state: pending, processing, succeeded with outputs, failed."""
    ids = [client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
           for _ in range(4)]
    with app.app_context():
        session = db.session
        session.execute(update(Run).where(Run.id.in_(ids[1:])).values(status="processing",
                                                                       started_at=utcnow()))
        runs.mark_succeeded(session, ids[2], ["/files/a.png", "/files/b.png"], public_url="")
        runs.mark_failed(session, ids[3], message="upstream said no", code="provider_error")
        session.commit()
    return ids


def test_rows_match_core_in_every_state(app, run_ids):
    query = DriverQuery(_STATEMENT)
    with app.app_context():
        connection = db.connection
        for run_id in run_ids:
            core = connection.execute(_STATEMENT, {"run_id": run_id}).first()
            driver = query.first(connection, {"run_id": run_id})
            assert tuple(driver) == tuple(core)
            assert driver._fields == tuple(core._fields)
            assert driver.created_at.tzinfo is not None  # the UTC type applied
        assert isinstance(query.first(connection, {"run_id": run_ids[2]}).output_urls, list)
        assert query.first(connection, {"run_id": "run_missing"}) is None


def test_the_engine_events_see_the_statement_and_it_reads_outside_a_transaction(app, run_ids):
    seen = []

    def record(conn, _cursor, statement, *_args):
        seen.append((statement.split()[0], _in_transaction(conn.connection.dbapi_connection)))

    query = DriverQuery(_STATEMENT)
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            token = extensions.begin_reading_only()
            try:
                query.first(db.connection, {"run_id": run_ids[0]})
            finally:
                extensions.end_reading_only(token)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert seen == [("SELECT", False)]


def test_a_parameter_that_needs_bind_processing_is_refused(app):
    query = DriverQuery(select(Run.id).where(Run.input == bindparam("input", type_=Run.input.type)))
    with app.app_context(), pytest.raises(ValueError, match="bind processing"):
        query.first(db.connection, {"input": {"prompt": "x"}})
