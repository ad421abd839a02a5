"""Grids (batches) in the service layer, on SQLite and PostgreSQL: every cell is a run
with its own charge, refund and lineage; creation is all or nothing; key spend and the
ledger invariants hold (conftest checks them after every test); sharing is revocable."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Batch, LedgerEntry, Run, User
from runbase_web.services import batches, keys, ledger, runs
from runbase_web.services.batches import GridCell
from runbase_web.services.run_creation import ManyRunsRefused

SEEDS_BY_OUTCOME = {"x": {"kind": "seed", "name": "", "label": "Seed", "values": ["1", "2", "3"]},
                    "y": {"kind": "field", "name": "outcome", "label": "Outcome",
                          "values": ["succeed", "fail"]}}


def six_cells(model: str = "local/test") -> list[GridCell]:
    """A 2×3 grid of local/test: seeds 1–3 across, outcome succeed/fail down."""
    return [GridCell(row, col, model, {"prompt": "a grid", "seed": seed, "outcome": outcome})
            for row, outcome in enumerate(["succeed", "fail"])
            for col, seed in enumerate([1, 2, 3])]


def counts(user_id: int) -> tuple[int, int, int, int]:
    """(balance, runs, ledger entries, batches) of the account, as committed."""
    db.session.rollback()
    balance = db.session.get(User, user_id, populate_existing=True).balance_micros
    count = lambda model: db.session.scalar(  # noqa: E731
        select(func.count()).select_from(model).where(model.user_id == user_id))
    return balance, count(Run), count(LedgerEntry), count(Batch)


def make(user_id: int, cells=None, **kwargs):
    return batches.create_batch(db.session, state.run_creator(), user_id=user_id,
                                model_id="local/test", axes=SEEDS_BY_OUTCOME,
                                cells=six_cells() if cells is None else cells, **kwargs)


def test_a_grid_is_one_batch_of_runs_each_charged_at_its_place(app, make_user):
    owner = make_user(credit_micros=5000)
    with app.app_context():
        batch, made = make(owner.id)
        db.session.commit()
        assert len(made) == 6 and all(run.batch_id == batch.id for run in made)
        assert [(run.batch_row, run.batch_col) for run in made] == [
            (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
        assert [run.input["seed"] for run in made] == [1, 2, 3, 1, 2, 3]
        assert counts(owner.id) == (5000 - 600, 6, 1 + 6, 1)
        columns, rows = batches.layout(batch.axes, batches.batch_runs(db.session, batch))
        assert columns == ["1", "2", "3"] and [row.label for row in rows] == ["succeed", "fail"]
        assert rows[1].cells[2].input == {"prompt": "a grid", "seed": 3, "outcome": "fail",
                                          "delay_ms": 0}


def test_balance_for_five_of_six_creates_nothing_and_leaves_the_balance(app, make_user):
    owner = make_user(credit_micros=550)
    with app.app_context():
        before = counts(owner.id)
        with pytest.raises(ManyRunsRefused) as refused:
            make(owner.id)
        db.session.commit()  # even a caller that commits after the refusal keeps nothing
        assert "too low for these 6 runs, which cost $0.0006 together" in refused.value.message
        assert counts(owner.id) == before == (550, 0, 1, 0)


def test_one_invalid_cell_refuses_the_whole_grid_and_says_which(app, make_user):
    owner = make_user(credit_micros=5000)
    with app.app_context():
        cells = six_cells()
        cells[4] = GridCell(1, 1, "local/test", {"prompt": "a grid", "outcome": "explode"})
        with pytest.raises(ManyRunsRefused) as refused:
            make(owner.id, cells)
        db.session.commit()
        assert list(refused.value.by_index) == [4]
        assert counts(owner.id) == (5000, 0, 1, 0)


def test_more_than_36_cells_is_refused_before_anything_is_made(app, make_user):
    owner = make_user(credit_micros=50_000)
    with app.app_context():
        cells = [GridCell(0, col, "local/test", {"prompt": "p"}) for col in range(37)]
        with pytest.raises(batches.TooManyCells):
            make(owner.id, cells)
        assert counts(owner.id) == (50_000, 0, 1, 0)


def test_a_failing_cell_is_refunded_once_and_key_spend_follows(app, make_user, make_key):
    owner = make_user(credit_micros=5000)
    full_key = make_key(owner)
    with app.app_context():
        key = keys.find_active_key(db.session, full_key)
        batch, made = make(owner.id, api_key_id=key.id)
        db.session.commit()
        assert db.session.get(type(key), key.id, populate_existing=True).spent_micros == 600
        failing = made[4]
        assert runs.mark_failed(db.session, failing.id, message="boom", code="provider_error")
        # A second ending (worker retry, cancel racing it) refunds nothing more.
        assert not runs.mark_failed(db.session, failing.id, message="again", code="provider_error")
        run, canceled = runs.cancel_run(db.session, owner.id, failing.id)
        assert not canceled
        db.session.commit()
        refunds = db.session.scalars(select(LedgerEntry.amount_micros).where(
            LedgerEntry.run_id == failing.id, LedgerEntry.kind == "refund")).all()
        assert refunds == [100]
        assert counts(owner.id)[0] == 5000 - 500
        assert db.session.get(type(key), key.id, populate_existing=True).spent_micros == 500
        assert ledger.invariant_violations(db.session) == []


def test_rerun_makes_a_new_grid_with_the_same_axes_and_lineage(app, make_user):
    owner = make_user(credit_micros=5000)
    with app.app_context():
        old, old_runs = make(owner.id)
        db.session.commit()
        new, new_runs = batches.rerun_batch(db.session, state.run_creator(), owner.id, old.id)
        db.session.commit()
        assert new.id != old.id and new.axes == old.axes
        assert [run.parent_id for run in new_runs] == [run.id for run in old_runs]
        assert [(r.batch_row, r.batch_col, r.input) for r in new_runs] == [
            (r.batch_row, r.batch_col, r.input) for r in old_runs]
        assert counts(owner.id)[:2] == (5000 - 1200, 12)


def test_without_a_seed_axis_every_cell_shares_one_seed(app, make_user):
    owner = make_user(credit_micros=5000)
    axes = {"x": {"kind": "field", "name": "outcome", "label": "Outcome",
                  "values": ["succeed", "fail"]}, "y": None}
    cells = [GridCell(0, col, "local/test", {"prompt": "p", "outcome": value})
             for col, value in enumerate(["succeed", "fail"])]
    with app.app_context():
        _batch, made = batches.create_batch(db.session, state.run_creator(), user_id=owner.id,
                                            model_id="local/test", axes=axes, cells=cells,
                                            seed_mode="new")
        db.session.commit()
        assert made[0].input["seed"] == made[1].input["seed"]


def test_grids_are_private_and_their_share_link_is_revocable(app, make_user):
    owner, other = make_user(credit_micros=5000), make_user()
    with app.app_context():
        batch, _made = make(owner.id)
        db.session.commit()
        with pytest.raises(batches.BatchNotFound):
            batches.get_batch(db.session, other.id, batch.id)
        shared = batches.share_batch(db.session, owner.id, batch.id, hide_prompt=True)
        token = shared.share_token
        assert batches.find_shared_batch(db.session, token).id == batch.id
        assert batches.shared_prompt(shared, _made[0]) is None
        batches.revoke_batch_share(db.session, owner.id, batch.id)
        db.session.commit()
        assert batches.find_shared_batch(db.session, token) is None
        again = batches.share_batch(db.session, owner.id, batch.id, hide_prompt=False)
        assert again.share_token != token
        with pytest.raises(batches.BatchNotFound):
            batches.share_batch(db.session, other.id, batch.id, hide_prompt=False)


def test_two_grids_racing_for_one_grids_balance_make_exactly_one(app, make_user):
    owner = make_user(credit_micros=600)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def attempt():
        with app.app_context():
            start.wait()
            try:
                make(owner.id)
                db.session.commit()
                outcomes.append("made")
            except ManyRunsRefused:
                db.session.rollback()
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["made", "refused"]
    with app.app_context():
        assert counts(owner.id) == (0, 6, 1 + 6, 1)
