"""Batches: a grid of runs made together (Playground "Grid"), one run per cell."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class Batch(Base):
    """A grid of runs: up to two axes (columns x, rows y), each with its values; every
    cell is a run whose batch_id is this batch and whose batch_row/batch_col say where
    it sits. The runs carry their own cost, refund and lineage; the batch only groups
    and labels them, and is shared (or not) as a whole."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: The model of the form the grid was made from (cells may differ on a model axis).
    model: Mapped[str] = mapped_column(String(200))
    #: {"x": axis, "y": axis or null}; an axis is {"kind", "name", "label", "values"}
    #: with the values as the headers show them (services/batches.py).
    axes: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Unguessable token of the public /g/<token> page; None when not shared or revoked.
    share_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The owner chose to hide the prompts on the shared page.
    share_hide_prompt: Mapped[bool] = mapped_column(Boolean, default=False)
    shared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
