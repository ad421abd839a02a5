"""Stripe Checkout Sessions this server created: the only payments a webhook may credit."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..money import MICROS_PER_CENT
from .base import Base, UTCDateTime, utcnow


class CheckoutSession(Base):
    """A top-up as this server asked Stripe for it: whose, how much, in what currency.

    Written when Stripe returns the session id and committed before the browser goes to
    Stripe, so every session a user can pay is here. The webhook credits the account and
    amount recorded here, never the ones the event names, so a paid session or Payment
    Link this server did not create credits nobody.
    """

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Stripe's `cs_...` id; also the credit's `ledger_entries.external_ref`.
    stripe_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: What Stripe is asked to charge (its `amount_total` must match exactly).
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    mode: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The top-up entry once credited; None until the paid webhook arrives.
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))

    @property
    def amount_micros(self) -> int:
        """What the account is credited when the session is paid: its amount, in micro-USD."""
        return self.amount_cents * MICROS_PER_CENT
