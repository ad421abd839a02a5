"""Account look-ups the views use instead of reading tables: the balance as the database
has it now, and what GET /api/v1/account tells a key."""
from __future__ import annotations

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.services import accounts, keys


def test_fresh_balance_includes_a_charge_made_in_this_session(app, user):
    with app.app_context():
        accounts.get_user(db.session, user.id)  # loaded before the charge
        state.run_creator().create(db.session, user_id=user.id, model_id="local/test",
                                   raw_input={"prompt": "x"}, source="playground")
        assert accounts.fresh_balance(db.session, user.id) == 1_000_000 - 100
        db.session.rollback()


def test_key_account_names_the_owner_the_key_and_what_it_may_still_spend(app, user, make_key):
    full_key = make_key(user, "ci")
    with app.app_context():
        key = keys.find_active_key(db.session, full_key)
        assert accounts.key_account(db.session, user.id, key.id).remaining_micros is None
        key.spend_limit_micros = 500
        state.run_creator().create(db.session, user_id=user.id, api_key_id=key.id,
                                   model_id="local/test", raw_input={"prompt": "x"}, source="api")
        db.session.commit()
        account = accounts.key_account(db.session, user.id, key.id)
        assert (account.email, account.balance_micros) == (user.email, 1_000_000 - 100)
        assert (account.key.id, account.key.spent_micros) == (key.id, 100)
        assert account.remaining_micros == 400
