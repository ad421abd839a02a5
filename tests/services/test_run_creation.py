"""Creating runs through the app's RunCreator: one run or several, each all or nothing
even when the caller commits after a refusal; the seed control; settings read per call."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from runbase_web import state
from runbase_web.errors import RunbaseError, SpendLimitExceeded
from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, Run, User
from runbase_web.services import keys, run_creation
from runbase_web.services.run_creation import ManyRunsRefused


def _counts(user_id: int) -> tuple[int, int, int]:
    """(balance, runs, ledger entries) of the account, as committed."""
    db.session.rollback()
    balance = db.session.get(User, user_id, populate_existing=True).balance_micros
    runs = db.session.scalar(select(func.count()).select_from(Run).where(Run.user_id == user_id))
    entries = db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                .where(LedgerEntry.user_id == user_id))
    return balance, runs, entries


def test_a_refused_create_leaves_nothing_even_if_the_caller_commits(app, make_user, make_key):
    owner = make_user(credit_micros=5000)
    full_key = make_key(owner)
    with app.app_context():
        key = keys.find_active_key(db.session, full_key)
        key.spend_limit_micros = 500  # below local/sketch's 1000: the balance goes first
        db.session.commit()
        before = _counts(owner.id)
        with pytest.raises(SpendLimitExceeded):
            state.run_creator().create(db.session, user_id=owner.id, api_key_id=key.id,
                                       model_id="local/sketch", raw_input={"prompt": "x"},
                                       source="api")
        db.session.commit()
        assert _counts(owner.id) == before


def test_create_many_makes_every_run_and_charges_each(app, make_user):
    owner = make_user(credit_micros=5000)
    with app.app_context():
        created = state.run_creator().create_many(
            db.session, user_id=owner.id,
            inputs=[("local/sketch", {"prompt": "a"}), ("local/test", {"prompt": "b"})])
        db.session.commit()
        assert [run.model for run in created] == ["local/sketch", "local/test"]
        assert all(run.source == "playground" for run in created)
        assert _counts(owner.id) == (5000 - 1000 - 100, 2, 1 + 2)


def test_create_many_short_of_balance_makes_none_and_names_the_total(app, make_user):
    owner = make_user(credit_micros=1050)
    with app.app_context():
        with pytest.raises(ManyRunsRefused) as refused:
            state.run_creator().create_many(
                db.session, user_id=owner.id,
                inputs=[("local/sketch", {"prompt": "a"}), ("local/test", {"prompt": "b"})])
        db.session.commit()
        assert refused.value.errors == {}
        assert "too low for these 2 runs" in refused.value.message
        assert "Nothing was run" in refused.value.message
        assert _counts(owner.id) == (1050, 0, 1)


def test_create_many_reports_every_invalid_input_and_makes_none(app, make_user):
    owner = make_user(credit_micros=5000)
    with app.app_context():
        with pytest.raises(ManyRunsRefused) as refused:
            state.run_creator().create_many(
                db.session, user_id=owner.id,
                inputs=[("local/sketch", {"prompt": "fine"}), ("local/test", {}),
                        ("local/sketch-video", {"prompt": "waves", "duration": 999})])
        db.session.commit()
        assert set(refused.value.errors) == {"local/test", "local/sketch-video"}
        assert refused.value.message.startswith("Nothing was run: fix the input for local/test")
        assert _counts(owner.id) == (5000, 0, 1)


def _create(owner, seed_mode, raw_input) -> int:
    run = state.run_creator().create(db.session, user_id=owner.id, model_id="local/test",
                                     raw_input=raw_input, source="playground",
                                     seed_mode=seed_mode)
    db.session.commit()
    return run.input["seed"]


def test_the_seed_control(app, user):
    with app.app_context():
        assert _create(user, None, {"prompt": "x", "seed": 7}) == 7
        assert _create(user, "keep", {"prompt": "x"}) == 7  # the last seed again
        assert _create(user, "keep", {"prompt": "x", "seed": 9}) == 9  # a typed seed wins
        assert _create(user, "new", {"prompt": "x", "seed": 9}) != 9  # drawn (1 in 2**31)


def test_keep_seed_without_an_earlier_seed_draws_one(app, user):
    with app.app_context():
        seed = _create(user, "keep", {"prompt": "x"})
        assert 0 <= seed <= run_creation.MAX_SEED


def test_the_creator_reads_the_provider_variables_on_each_create(app, user):
    with app.app_context():
        spec = next(spec for spec in state.catalog().all() if spec.missing_env({}))
        creator = state.run_creator()
        with pytest.raises(run_creation.ModelNotFound):
            creator.create(db.session, user_id=user.id, model_id=spec.id,
                           raw_input={"prompt": "x"}, source="api")
        app.config["PROVIDER_ENV"] = {name: "set" for name in spec.missing_env({})}
        try:
            creator.create(db.session, user_id=user.id, model_id=spec.id,
                           raw_input={"prompt": "x"}, source="api")
        except run_creation.ModelNotFound:
            pytest.fail("the creator did not see the new provider variables")
        except RunbaseError:
            pass  # the model was found; its input or price may still be refused
        db.session.rollback()


def test_workers_are_woken_only_by_a_run_that_was_created(app, make_user, database_url):
    """On PostgreSQL the create is one statement that also NOTIFYs: a refused create
    (balance too low) must wake nobody, a created run must wake listeners once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's")
    import psycopg

    owner = make_user(credit_micros=1000)  # exactly one local/sketch run
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql"),
                         autocommit=True) as listener, app.app_context():
        listener.execute(f"LISTEN {run_creation.WAKE_CHANNEL}")

        def create():
            state.run_creator().create(db.session, user_id=owner.id, api_key_id=None,
                                       model_id="local/sketch", raw_input={"prompt": "x"},
                                       source="api")
            db.session.commit()

        def heard() -> int:
            return sum(1 for _ in listener.notifies(timeout=0.5, stop_after=5))

        create()
        assert heard() == 1
        with pytest.raises(RunbaseError):
            create()
        db.session.rollback()
        assert heard() == 0
        assert _counts(owner.id) == (0, 1, 2)  # the grant's entry and one charge
