"""Provider callbacks acted on: remembered while a replay of one could still pass."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class ProviderCallback(Base):
    """One provider callback this server acted on, by `<adapter>:<message id>`.

    A signed callback stays valid for as long as its timestamp is within the tolerance
    (webhook_signatures.TOLERANCE_SECONDS), so a copy of it could be replayed until then:
    the unique id refuses the copy. Rows older than that are deleted (services/callbacks.py).
    """

    __tablename__ = "provider_callbacks"

    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
