"""Tests of Settings → Credits, Stripe top-ups and the admin credit page.

Small helpers shared by these modules live here.
"""
from __future__ import annotations

from runbase_web.extensions import db
from runbase_web.models import EntryKind, LedgerEntry
from runbase_web.services import ledger


def entries_of(app, user_id: int) -> list[LedgerEntry]:
    """A user's ledger entries, oldest first."""
    with app.app_context():
        return list(db.session.query(LedgerEntry).filter_by(user_id=user_id).order_by(LedgerEntry.id))


def add_grants(app, user_id: int, count: int, *, micros: int = 1, note: str = "g{n}") -> None:
    """Write `count` small grants (notes g1, g2, ...) straight through the ledger service."""
    with app.app_context():
        for n in range(1, count + 1):
            ledger.credit(db.session, user_id, micros, kind=EntryKind.GRANT, note=note.format(n=n))
        db.session.commit()
