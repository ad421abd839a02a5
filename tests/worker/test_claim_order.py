"""Claims go by due time, a new run being due since it was created: in-flight jobs whose
polls keep falling due cannot keep a newer run from its provider, and an overdue poll
is not pushed back by newer runs either; but a worker that is behind on its polls keeps
half of each claim for new runs, so they never wait behind the backlog."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from runbase_web.worker.claim import _AGED_FRESH_RUNS, _FRESH_RUNS, claim_work

SKETCH = {"model": "local/sketch", "input": {"prompt": "x"}}


def _create(client, auth) -> str:
    return client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]


def _set(app, run_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(**values))
        db.session.commit()


def _claim(app, slots: int) -> list[str]:
    """What the worker's claim takes with `slots` free threads, in its order."""
    return [run.id for run in claim_work(app, "test-owner", slots, 30).runs]


def _claim_one(app) -> str:
    [claimed] = _claim(app, 1)
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


def test_a_claim_of_several_keeps_half_its_slots_for_new_runs(app, client, auth):
    # A worker behind on its polls (every in-flight job overdue) still starts new runs at
    # once: up to half of each claim goes to runs never claimed, oldest first.
    now = utcnow()
    overdue = [_create(client, auth) for _ in range(6)]
    for run_id in overdue:
        _set(app, run_id, status="processing", created_at=now - timedelta(minutes=5),
             upstream_id="job", next_check_at=now - timedelta(seconds=30))
    new = [_create(client, auth) for _ in range(3)]
    claimed = _claim(app, 4)
    assert set(claimed) & set(new) == set(new[:2])  # the two oldest new runs
    assert len(set(claimed) & set(overdue)) == 2  # and the polls keep their half


def test_a_claim_with_a_fresh_lag_leaves_newer_runs_but_takes_due_polls(app, client, auth):
    # A worker that is not the first responder (runner.HELPER_LAG_SECONDS) takes a new run
    # only once it has waited unclaimed; a poll that fell due is anyone's at once.
    now = utcnow()
    new = _create(client, auth)
    waited = _create(client, auth)
    _set(app, waited, created_at=now - timedelta(seconds=5))
    polled = _create(client, auth)
    _set(app, polled, status="processing", created_at=now - timedelta(minutes=5),
         upstream_id="job", next_check_at=now - timedelta(seconds=0.1))
    helper = claim_work(app, "helper", 8, 30, fresh_lag=2.0)
    assert {run.id for run in helper.runs} == {waited, polled}
    assert _claim(app, 8) == [new]


def test_a_crashed_first_try_takes_its_turn_among_new_runs_by_creation(app, client, auth):
    # New runs (pending) and a dead worker's first tries (processing, never at rest, lease
    # expired) are read by separate SELECTs; the claim still takes them oldest first.
    now = utcnow()
    older_new, orphaned, newer_new, still_leased = (_create(client, auth) for _ in range(4))
    for run_id, age in ((older_new, 30), (orphaned, 20), (newer_new, 10), (still_leased, 40)):
        _set(app, run_id, created_at=now - timedelta(seconds=age))
    _set(app, orphaned, status="processing", lease_owner="dead-worker",
         lease_until=now - timedelta(seconds=1))
    _set(app, still_leased, status="processing", lease_owner="live-worker",
         lease_until=now + timedelta(minutes=1))
    assert _claim(app, 2) == [older_new, orphaned]
    assert _claim(app, 2) == [newer_new]  # a live lease is left alone


@pytest.mark.parametrize("statement", [_FRESH_RUNS, _AGED_FRESH_RUNS],
                         ids=["any-age", "aged"])
def test_new_runs_are_read_off_the_index_without_sorting_the_queue(app, statement):
    # The claim reads its few oldest new runs in index order and stops: sorting every
    # queued run on each claim made a claim's cost grow with the queue (10 ms with
    # 10,000 queued on SQLite), inside the write transaction. A helper worker's claim
    # (only runs created by `fresh_before`) reads the same way.
    engine = db.state(app).engine
    compiled = statement.compile(engine)
    values = {**compiled.params, "at": utcnow(), "limit": 4, "fresh_before": utcnow()}
    arguments = (tuple(values[name] for name in compiled.positiontup)
                 if compiled.positiontup else values)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            explain = "EXPLAIN QUERY PLAN "
        else:
            # The table is nearly empty, and its statistics are whatever earlier tests
            # left: on those costs alone the planner may as well scan and sort a few
            # rows (one CI run read one kind some other way). Ruling out every
            # path but an index read in order asks the question this test is about:
            # whether the statement can be answered without sorting. With the old ORDER
            # BY it cannot, and the plan still sorts.
            for path in ("seqscan", "bitmapscan", "sort", "incremental_sort"):
                connection.exec_driver_sql(f"SET LOCAL enable_{path} = off")
            explain = "EXPLAIN "
        plan = [str(row[-1]) for row in connection.exec_driver_sql(explain + str(compiled),
                                                                   arguments)]
    shown = "\n".join(plan)
    assert sum("ix_runs_due" in step for step in plan) == 2, shown  # one read per kind
    assert not any("TEMP B-TREE" in step or "Sort" in step for step in plan), shown
