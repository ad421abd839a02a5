"""The heartbeat renews the leases a worker holds, and never waits for a run another
transaction is writing: the worker's own claim transaction writes many of the same
runs (its succeeded runs, its pending polls) in its own order, and waiting on each other
was a deadlock that stalled the worker for PostgreSQL's deadlock_timeout."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from runbase_web.worker.claim import claim_work, renew_leases

SKETCH = {"model": "local/sketch", "input": {"prompt": "x"}}
LEASE_SECONDS = 30


def _leased(app, client, auth, count: int, owner: str) -> list[str]:
    """`count` new runs, claimed by `owner`, in id order."""
    for _ in range(count):
        client.post("/api/v1/runs", json=SKETCH, headers=auth)
    claimed = [run.id for run in claim_work(app, owner, count, LEASE_SECONDS).runs]
    assert len(claimed) == count
    return sorted(claimed)


def _lease_until(app, run_id: str):
    with app.app_context():
        return db.session.scalar(select(Run.lease_until).where(Run.id == run_id))


def _renew(app, owner: str, run_ids: list[str], seconds: int) -> int:
    with app.app_context():
        return renew_leases(db.session, owner, run_ids, seconds)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_heartbeat_renews_only_its_own_leases(app, client, auth):
    mine = _leased(app, client, auth, 2, "worker-a")
    theirs = _leased(app, client, auth, 1, "worker-b")
    before = {run_id: _lease_until(app, run_id) for run_id in mine + theirs}
    assert _renew(app, "worker-a", mine + theirs, 10 * LEASE_SECONDS) == 2
    for run_id in mine:
        assert _lease_until(app, run_id) > before[run_id] + timedelta(seconds=LEASE_SECONDS)
    assert _lease_until(app, theirs[0]) == before[theirs[0]], "another worker's lease"
    assert _renew(app, "worker-a", [], LEASE_SECONDS) == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_heartbeat_skips_a_run_being_written_and_cannot_deadlock(app, client, auth):
    first, second = _leased(app, client, auth, 2, "worker-a")
    before = _lease_until(app, first)
    renewed: list[int] = []
    heartbeat = threading.Thread(target=lambda: renewed.append(
        _renew(app, "worker-a", [first, second], 10 * LEASE_SECONDS)))
    with db.state(app).engine.connect() as claim:
        # The claim transaction writes the second run first (it finished first)...
        claim.execute(text("UPDATE runs SET lease_until = :until WHERE id = :id"),
                      {"until": utcnow(), "id": second})
        try:
            heartbeat.start()
            heartbeat.join(timeout=10)
            # ... and the heartbeat, which reaches the first run first, did not wait for
            # the second: waiting, it would hold the first while the claim wants it.
            assert not heartbeat.is_alive(), "the heartbeat waits for a run being written"
            assert renewed == [1]
            assert _lease_until(app, first) > before + timedelta(seconds=LEASE_SECONDS)
            claim.execute(text("SET LOCAL lock_timeout = '5s'"))
            claim.execute(text("UPDATE runs SET lease_until = NULL, lease_owner = NULL "
                               "WHERE id = :id"), {"id": first})
            claim.commit()
        finally:
            claim.rollback()  # releases a heartbeat that waited (the old behaviour)
            if heartbeat.is_alive():
                heartbeat.join(timeout=30)
