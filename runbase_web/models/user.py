"""Accounts: people who sign in and own keys, runs and a prepaid balance."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, Boolean, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class User(UserMixin, Base):
    """An account. `balance_micros` is a cache of the sum of its ledger entries."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("balance_micros >= 0", name="balance_not_negative"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Secret that signs this account's webhook deliveries (Standard Webhooks, "whsec_...").
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    #: Google's stable subject id once the account has signed in with Google.
    google_sub: Mapped[str | None] = mapped_column(String(255), unique=True)
