"""Claims go by due time, a new run being due since it was created: in-flight jobs whose
polls keep falling due cannot keep a newer run from its provider, and an overdue poll
is not pushed back by newer runs either."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from runbase_web.worker.claim import claim_due

SKETCH = {"model": "local/sketch", "input": {"prompt": "x"}}


def _create(client, auth) -> str:
    return client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]


def _set(app, run_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(**values))
        db.session.commit()


def _claim_one(app) -> str:
    with app.app_context():
        [claimed] = claim_due(db.session, "test-owner", 1, 30)
        return claimed


def test_a_new_run_goes_before_polls_that_fell_due_after_it(app, client, auth):
    now = utcnow()
    in_flight = [_create(client, auth) for _ in range(5)]
    for run_id in in_flight:  # created long ago, polled ever since: due again just now
        _set(app, run_id, status="processing", created_at=now - timedelta(minutes=5),
             upstream_id="job", next_check_at=now - timedelta(seconds=0.5))
    new = _create(client, auth)
    _set(app, new, created_at=now - timedelta(seconds=1))
    assert _claim_one(app) == new


def test_an_overdue_poll_goes_before_a_newer_run(app, client, auth):
    now = utcnow()
    polled = _create(client, auth)
    _set(app, polled, status="processing", created_at=now - timedelta(minutes=5),
         upstream_id="job", next_check_at=now - timedelta(seconds=3))
    new = _create(client, auth)
    _set(app, new, created_at=now - timedelta(seconds=1))
    assert _claim_one(app) == polled
