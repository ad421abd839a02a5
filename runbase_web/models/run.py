"""Runs: one generation request, its lifecycle, lease and outputs."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, literal
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, PrintableJSON, UTCDateTime, utcnow


class RunStatus(str, enum.Enum):
    """The four public statuses; cancel ends a run as FAILED with errorCode canceled."""

    #: Queued, waiting for a worker.
    PENDING = "pending"
    #: A worker has it: at the provider, or between polls of an async provider.
    PROCESSING = "processing"
    #: Outputs are stored and listed in `output_urls`.
    SUCCEEDED = "succeeded"
    #: Ended without outputs; the cost was refunded.
    FAILED = "failed"


ACTIVE_STATUSES = (RunStatus.PENDING.value, RunStatus.PROCESSING.value)


def is_active(status_column):
    """`status_column IN ('pending', 'processing')`, for statements built once: the values
    as plain bound parameters. A list of values would become an expanding parameter, which
    SQLAlchemy renders anew (with PostgreSQL casts) on every execution of a cached statement."""
    return status_column.in_([literal(value, String) for value in ACTIVE_STATUSES])


class Run(Base):
    """A run. Worker bookkeeping (lease, attempts, next check) lives on the row itself,
    so the queue and the record can never disagree (transactional enqueue, W10)."""

    __tablename__ = "runs"
    __table_args__ = (
        # Due runs by status and next check; new runs (no next check) then come oldest
        # first, so a claim reads its few rows off the index however long the queue.
        Index("ix_runs_due", "status", "next_check_at", "created_at", "id"),
        Index("ix_runs_user_created", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    #: "api" or "playground": where the run was created.
    source: Mapped[str] = mapped_column(String(20), default="api")
    model: Mapped[str] = mapped_column(String(200))
    input: Mapped[dict] = mapped_column(PrintableJSON)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.PENDING.value)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    output_urls: Mapped[list | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the worker should look at the run next (retry backoff, async poll).
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: How many times a worker started the provider call (not counting polls).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The provider's job id, committed before polling so a restart resumes it.
    upstream_id: Mapped[str | None] = mapped_column(String(255))
    upstream_state: Mapped[dict | None] = mapped_column(JSON)
    #: What the provider said of the job in a signed callback the worker has not read yet
    #: (services/callbacks.py); the worker takes it instead of polling, then clears it.
    #: SQL NULL when there is none (not JSON null), so "IS NOT NULL" finds the waiting ones.
    callback_body: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    #: The adapter the worker started the provider call with (catalog.effective_adapter at
    #: the first attempt), so polls and the upstream cancel go back to it even if the
    #: variables change mid-run; None for runs not started yet or from before the column.
    adapter: Mapped[str | None] = mapped_column(String(40))
    #: Asking the provider to stop the upstream job of a run that ended without it (user
    #: cancel, deadline): None (nothing to ask), "requested" (a worker will ask, at
    #: next_check_at), "sent" (the provider took it) or "failed" (it never did).
    upstream_cancel: Mapped[str | None] = mapped_column(String(20), index=True)
    #: The run this one was made from (rerun, edit & rerun, use as reference): lineage.
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    #: https URL notified once when the run ends (README, "Webhooks").
    webhook_url: Mapped[str | None] = mapped_column(Text)
    #: Unguessable token of the public /s/<token> page; None when not shared or revoked.
    share_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The owner chose to hide the prompt on the shared page.
    share_hide_prompt: Mapped[bool] = mapped_column(Boolean, default=False)
    shared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The grid (batch) this run is a cell of, and where: row and column from 0.
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)
    batch_row: Mapped[int | None] = mapped_column(Integer)
    batch_col: Mapped[int | None] = mapped_column(Integer)

    @property
    def is_finished(self) -> bool:
        """True once the run is succeeded or failed; nothing changes it after that."""
        return self.status not in ACTIVE_STATUSES

    @property
    def refunded(self) -> bool:
        """Failed runs are always refunded in full (README, "Reliability")."""
        return self.status == RunStatus.FAILED.value
