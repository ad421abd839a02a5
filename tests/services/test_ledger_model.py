"""Model-based test of the money rules, on SQLite and PostgreSQL.

Hypothesis drives random sequences of grants, adjustments, run creations (through a key
with a spend limit), completions, failures and cancels against the real services and
database, and compares every step with a tiny in-memory model of what the balance, the
key's spend and each run should be. Seeds are fixed (derandomize) so CI is repeatable;
a failure prints the shortest sequence of steps that breaks a rule.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from runbase_web.errors import InsufficientBalance, RunbaseError, SpendLimitExceeded
from runbase_web.extensions import db
from runbase_web.models import ApiKey, EntryKind, Run, User
from runbase_web.services import keys, ledger, run_creation, runs
from runbase_web.state import catalog

PER_IMAGE = 1000  # local/sketch costs 1000 micro-USD per image
KEY_LIMIT = 12 * PER_IMAGE


def ledger_machine(app):
    """A state machine class bound to `app`; each example gets a fresh account and key."""

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            with app.app_context():
                user = User(email=f"model-{id(self)}-{len(seen_users)}@example.com", balance_micros=0)
                db.session.add(user)
                db.session.flush()
                key, _full = keys.create_key(db.session, user.id, "model")
                key.spend_limit_micros = KEY_LIMIT
                db.session.commit()
                self.user_id, self.key_id = user.id, key.id
            seen_users.append(self.user_id)
            self.balance = 0
            self.key_spent = 0
            self.active: dict[str, int] = {}  # run id -> cost
            self.ended: set[str] = set()

        @rule(amount=st.integers(1, 8).map(lambda n: n * 1500))
        def grant(self, amount):
            with app.app_context():
                ledger.credit(db.session, self.user_id, amount, kind=EntryKind.GRANT, note="model")
                db.session.commit()
            self.balance += amount

        @rule(amount=st.integers(1, 20_000))
        def take_back(self, amount):
            """A negative adjustment succeeds only if the balance covers it."""
            with app.app_context():
                try:
                    ledger.credit(db.session, self.user_id, -amount, kind=EntryKind.ADJUST, note="model")
                    db.session.commit()
                    refused = False
                except RunbaseError:
                    db.session.rollback()
                    refused = True
            assert refused == (amount > self.balance)
            if not refused:
                self.balance -= amount

        @rule(images=st.integers(1, 4))
        def create(self, images):
            cost = images * PER_IMAGE
            with app.app_context():
                try:
                    run = run_creation.create_run(db.session, catalog=catalog(app), provider_env={},
                                                  user_id=self.user_id, api_key_id=self.key_id,
                                                  model_id="local/sketch",
                                                  raw_input={"prompt": "model",
                                                             "num_images": images})
                    db.session.commit()
                    outcome = run.id
                except (InsufficientBalance, SpendLimitExceeded) as error:
                    db.session.rollback()
                    outcome = type(error)
            if cost > self.balance:
                assert outcome is InsufficientBalance
            elif self.key_spent + cost > KEY_LIMIT:
                assert outcome is SpendLimitExceeded
            else:
                assert isinstance(outcome, str)
                self.active[outcome] = cost
                self.balance -= cost
                self.key_spent += cost

        @precondition(lambda self: self.active)
        @rule(data=st.data())
        def succeed(self, data):
            run_id = data.draw(st.sampled_from(sorted(self.active)))
            with app.app_context():
                assert runs.mark_succeeded(db.session, run_id, ["http://x/files/generated/a.png"], public_url="")
                db.session.commit()
            del self.active[run_id]
            self.ended.add(run_id)

        @precondition(lambda self: self.active)
        @rule(data=st.data(), cancel=st.booleans())
        def fail_or_cancel(self, data, cancel):
            run_id = data.draw(st.sampled_from(sorted(self.active)))
            with app.app_context():
                if cancel:
                    _run, ended = runs.cancel_run(db.session, self.user_id, run_id)
                else:
                    ended = runs.mark_failed(db.session, run_id, message="model", code="provider_error")
                db.session.commit()
            assert ended
            cost = self.active.pop(run_id)
            self.ended.add(run_id)
            self.balance += cost
            self.key_spent -= cost

        @precondition(lambda self: self.ended)
        @rule(data=st.data())
        def end_again(self, data):
            """Finishing a finished run changes nothing: no second refund, no resurrection."""
            run_id = data.draw(st.sampled_from(sorted(self.ended)))
            with app.app_context():
                assert not runs.mark_failed(db.session, run_id, message="late", code="timeout")
                assert not runs.mark_succeeded(db.session, run_id, [], public_url="")
                db.session.commit()

        @invariant()
        def database_agrees_with_the_model(self):
            with app.app_context():
                assert db.session.get(User, self.user_id).balance_micros == self.balance
                assert db.session.get(ApiKey, self.key_id).spent_micros == self.key_spent
                active = {run.id for run in db.session.query(Run).filter(
                    Run.user_id == self.user_id, Run.status.in_(("pending", "processing")))}
                assert active == set(self.active)
                # The whole-database M6 check runs once, after the test (conftest).

    seen_users: list[int] = []
    return LedgerMachine


@pytest.mark.timeout(600)
def test_t1_ledger_follows_the_model(app):
    run_state_machine_as_test(
        ledger_machine(app),
        settings=settings(max_examples=10, stateful_step_count=20, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))
