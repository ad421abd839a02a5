"""Money under concurrency, on SQLite and PostgreSQL.

The conftest checks the M6 invariants after each test; these tests add the
scenario's own pass criteria.
"""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from runbase_web.extensions import db
from runbase_web.models import EntryKind, LedgerEntry, Run, User
from runbase_web.services import ledger, run_creation, runs
from runbase_web.state import catalog

SKETCH = {"model": "local/sketch", "input": {"prompt": "race"}}
RUN_COST = 1000  # local/sketch, one image


def aligned(count: int, action):
    """Run `action(i)` in `count` threads released together by a barrier; return results."""
    barrier = threading.Barrier(count)

    def go(index):
        barrier.wait()
        return action(index)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


@pytest.mark.parametrize("repetition", range(2))
def test_m8_concurrent_creates_never_overdraw(app, http_server, make_user, make_key, repetition):
    payer = make_user(credit_micros=50 * RUN_COST)
    headers = {"Authorization": f"Bearer {make_key(payer)}"}

    def create(_index):
        with requests.Session() as http:
            response = http.post(f"{http_server}/api/v1/runs", json=SKETCH, headers=headers, timeout=120)
            return response.status_code, (response.json().get("error") or {}).get("code")
    results = Counter(aligned(200, create))

    assert results == {(201, None): 50, (402, "insufficient_balance"): 150}
    with app.app_context():
        assert db.session.get(User, payer.id).balance_micros == 0
        charges = db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                    .where(LedgerEntry.kind == EntryKind.CHARGE.value))
        assert charges == 50
        assert db.session.scalar(select(func.count()).select_from(Run)) == 50


def _limit_key(app, make_key, owner, name: str, limit_micros: int) -> dict:
    """Headers for a new key of `owner` with a lifetime spend limit."""
    from runbase_web.services import keys as key_service
    full_key = make_key(owner, name)
    with app.app_context():
        key_service.find_active_key(db.session, full_key).spend_limit_micros = limit_micros
        db.session.commit()
    return {"Authorization": f"Bearer {full_key}"}


def _poster(base_url: str, headers_for):
    def create(index):
        with requests.Session() as http:
            response = http.post(f"{base_url}/api/v1/runs", json=SKETCH, headers=headers_for(index),
                                 timeout=120)
            return response.status_code, (response.json().get("error") or {}).get("code")
    return create


def _spent(app, headers: dict) -> int:
    from runbase_web.services import keys as key_service
    with app.app_context():
        return key_service.find_active_key(db.session, headers["Authorization"][7:]).spent_micros


def test_m9_key_limit_is_exact_under_concurrency(app, http_server, make_user, make_key):
    payer = make_user(credit_micros=100 * RUN_COST)
    headers = _limit_key(app, make_key, payer, "limited", 10 * RUN_COST)
    results = Counter(aligned(100, _poster(http_server, lambda _i: headers)))

    assert results == {(201, None): 10, (403, "api_key_spend_limit_exceeded"): 90}
    assert _spent(app, headers) == 10 * RUN_COST
    with app.app_context():
        assert db.session.get(User, payer.id).balance_micros == 90 * RUN_COST


def test_m10_two_limited_keys_share_one_balance(app, http_server, make_user, make_key):
    payer = make_user(credit_micros=15 * RUN_COST)
    both = [_limit_key(app, make_key, payer, f"key {n}", 10 * RUN_COST) for n in range(2)]
    results = aligned(100, _poster(http_server, lambda i: both[i % 2]))

    created = results.count((201, None))
    assert created == 15
    assert set(results) <= {(201, None), (402, "insufficient_balance"),
                            (403, "api_key_spend_limit_exceeded")}
    assert all(_spent(app, headers) <= 10 * RUN_COST for headers in both)
    assert sum(_spent(app, headers) for headers in both) == 15 * RUN_COST
    with app.app_context():
        assert db.session.get(User, payer.id).balance_micros == 0


def _new_run(app, user) -> str:
    with app.app_context():
        run = run_creation.create_run(db.session, catalog=catalog(app), provider_env={},
                                      user_id=user.id, api_key_id=None, model_id="local/sketch",
                                      raw_input={"prompt": "x"})
        db.session.commit()
        return run.id


def _in_app(app, action):
    def call(index):
        with app.app_context():
            result = action(index)
            db.session.commit()
            return result
    return call


def test_m11_many_actors_fail_one_run_one_refund(app, user):
    run_id = _new_run(app, user)
    outcomes = aligned(20, _in_app(app, lambda i: runs.mark_failed(
        db.session, run_id, message=f"actor {i}", code="provider_error")))

    assert outcomes.count(True) == 1
    with app.app_context():
        refunds = db.session.scalars(select(LedgerEntry).where(
            LedgerEntry.run_id == run_id, LedgerEntry.kind == EntryKind.REFUND.value)).all()
        assert [entry.amount_micros for entry in refunds] == [RUN_COST]
        assert db.session.get(User, user.id).balance_micros == 1_000_000


def test_m12_success_and_failure_race_one_terminal_state(app, make_user):
    payer = make_user(credit_micros=100 * RUN_COST)
    run_ids = [_new_run(app, payer) for _ in range(40)]

    def race(run_id):
        def act(index):
            if index == 0:
                return "succeeded" if runs.mark_succeeded(db.session, run_id, ["/files/generated/x.png"], public_url="") else None
            return "failed" if runs.mark_failed(db.session, run_id, message="x", code="timeout") else None
        return [w for w in aligned(2, _in_app(app, act)) if w]

    winners = [race(run_id) for run_id in run_ids]
    assert all(len(w) == 1 for w in winners), winners
    with app.app_context():
        statuses = dict(db.session.execute(select(Run.id, Run.status)).all())
    assert [statuses[run_id] for run_id in run_ids] == [w[0] for w in winners]


def test_refund_after_success_is_refused(app, user):
    run_id = _new_run(app, user)
    with app.app_context():
        assert runs.mark_succeeded(db.session, run_id, ["/files/generated/a.png"], public_url="")
        assert not runs.mark_failed(db.session, run_id, message="late", code="timeout")
        db.session.commit()
        assert db.session.get(User, user.id).balance_micros == 1_000_000 - RUN_COST


def test_credit_and_adjust_write_ledger_rows(app, user):
    with app.app_context():
        ledger.credit(db.session, user.id, 2_500_000, kind=EntryKind.GRANT, note="gift")
        ledger.credit(db.session, user.id, -500_000, kind=EntryKind.ADJUST, note="fix")
        db.session.commit()
        assert db.session.get(User, user.id).balance_micros == 3_000_000
        from runbase_web.errors import InsufficientBalance
        with pytest.raises(InsufficientBalance):
            ledger.credit(db.session, user.id, -3_000_001, kind=EntryKind.ADJUST)
        db.session.rollback()


def test_balance_check_constraint_is_a_backstop(app, user):
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError
    with app.app_context():
        with pytest.raises(IntegrityError):
            db.session.execute(update(User).where(User.id == user.id).values(balance_micros=-1))
            db.session.flush()
        db.session.rollback()


def test_ledger_unique_run_kind_refuses_a_second_refund(app, user):
    from sqlalchemy.exc import IntegrityError
    run_id = _new_run(app, user)
    with app.app_context():
        db.session.add(LedgerEntry(user_id=user.id, run_id=run_id, kind="charge",
                                   amount_micros=-1, balance_after_micros=0))
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_invariant_checker_catches_a_broken_balance(app, user):
    from sqlalchemy import update
    with app.app_context():
        db.session.execute(update(User).where(User.id == user.id).values(balance_micros=5))
        assert any("ledger sum" in problem for problem in ledger.invariant_violations(db.session))
        db.session.rollback()
