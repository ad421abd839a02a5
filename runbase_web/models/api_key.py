"""API keys: stored as a SHA-256 hash plus a short prefix for display."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class ApiKey(Base):
    """One `sk-` key of a user. The full key is never stored, only its hash."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Addresses allowed to use the key; empty means any address.
    ip_allowlist: Mapped[list] = mapped_column(JSON, default=list)
    #: Lifetime limit on net spend (charges minus refunds); None means no limit.
    spend_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Deleted keys stay as rows so ledger entries keep their key; they never authenticate.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def display(self) -> str:
        """What the UI shows instead of the key: its prefix and an ellipsis."""
        return f"{self.prefix}…"
