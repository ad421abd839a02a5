"""What the Playground needs to be a workspace rather than a blank form: the account's
recent runs page by page, and how long a model usually takes on this server."""
from __future__ import annotations

from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Run, RunStatus
from . import runs

#: Cards shown on one page of the Playground's runs column.
PAGE_SIZE = 10
#: How many of a model's latest successes its typical duration is taken from.
TYPICAL_SAMPLE = 20


def recent_page(session: Session, user_id: int, *, after: str | None = None,
                limit: int = PAGE_SIZE) -> tuple[list[Run], str | None]:
    """The account's runs newest first, after the cursor run `after` (None: the newest).

    Returns (runs, cursor of the next older page or None when there is none). A cursor
    that is not one of the account's runs raises RunNotFound, like any other look-up.
    """
    page, more = runs.list_runs(session, user_id, limit=limit, after=after)
    return page, (page[-1].id if more and page else None)


def typical_seconds(session: Session, model_ids: set[str]) -> dict[str, int]:
    """How long each model's runs usually take here, in whole seconds (median of its
    latest succeeded runs, all accounts: the model's speed is not a per-user secret and
    a new account has no history of its own). Models never run here are left out."""
    typical: dict[str, int] = {}
    for model_id in sorted(model_ids):
        rows = session.execute(
            select(Run.created_at, Run.completed_at)
            .where(Run.model == model_id, Run.status == RunStatus.SUCCEEDED.value,
                   Run.completed_at.is_not(None))
            .order_by(Run.completed_at.desc()).limit(TYPICAL_SAMPLE)).all()
        seconds = [(done - created).total_seconds() for created, done in rows]
        if seconds:
            typical[model_id] = max(1, round(median(seconds)))
    return typical
