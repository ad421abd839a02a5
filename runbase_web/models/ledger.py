"""The ledger: one append-only row per money movement of an account."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class EntryKind(str, enum.Enum):
    """Why money moved; the amount's sign says which way."""

    #: Free credit: the signup grant, an operator's or admin's gift.
    GRANT = "grant"
    #: Money paid in (Stripe Checkout).
    TOPUP = "topup"
    #: A run's cost, taken when the run is created (negative).
    CHARGE = "charge"
    #: A failed run's cost given back (positive), at most once per run.
    REFUND = "refund"
    #: An operator's correction, either sign.
    ADJUST = "adjust"


class LedgerEntry(Base):
    """A signed movement of micro-USD. The user's balance equals the sum of its entries."""

    __tablename__ = "ledger_entries"
    # The database itself refuses a second charge or refund for one run.
    __table_args__ = (UniqueConstraint("run_id", "kind", name="uq_ledger_run_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    balance_after_micros: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(500))
    #: The outside payment this entry records (a Stripe Checkout Session id): the database refuses
    #: a second entry for one payment, so a replayed webhook can never credit twice.
    external_ref: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
