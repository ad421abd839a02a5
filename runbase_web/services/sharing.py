"""Share links: a public, unguessable /s/<token> page for one succeeded run.

The token is the capability: revoking clears it, and sharing again mints a new one, so
a revoked link never comes back to life.
"""
from __future__ import annotations

import copy
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import RunbaseError
from ..models import Run, RunStatus, utcnow
from . import runs

#: What secrets.token_urlsafe(24) produces; anything else is not worth a query.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class NotShareable(RunbaseError):
    """The user's run can't be shared (it has no outputs to show); `run` is that run."""

    def __init__(self, run: Run, message: str):
        super().__init__(message)
        self.run = run


def share_run(session: Session, user_id: int, run_id: str, *, hide_prompt: bool) -> Run:
    """Share the user's succeeded run (or update whether its prompt is hidden).

    An already shared run keeps its token and its shared_at. Raises RunNotFound for
    another account's run and NotShareable for a run that has no outputs to show.
    """
    run = runs.get_run(session, user_id, run_id)
    if run.status != RunStatus.SUCCEEDED.value:
        raise NotShareable(run, "Only a run that succeeded can be shared.")
    if run.share_token is None:
        run.share_token = secrets.token_urlsafe(24)
        run.shared_at = utcnow()
    run.share_hide_prompt = bool(hide_prompt)
    session.flush()
    return run


def revoke_share(session: Session, user_id: int, run_id: str) -> Run:
    """Stop sharing the user's run: its link answers 404 from now on."""
    run = runs.get_run(session, user_id, run_id)
    run.share_token = None
    run.shared_at = None
    run.share_hide_prompt = False
    session.flush()
    return run


def find_shared(session: Session, token: str) -> Run | None:
    """The run shared under `token`, or None (unknown, revoked or malformed token)."""
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        return None
    run = session.scalar(select(Run).where(Run.share_token == token))
    if run is None or run.status != RunStatus.SUCCEEDED.value:
        return None
    return run


def shared_input(run: Run) -> dict:
    """The run's input as the public may see it: without the prompt when it is hidden."""
    data = copy.deepcopy(run.input or {})
    if run.share_hide_prompt:
        data.pop("prompt", None)
    return data


def shared_prompt(run: Run) -> str | None:
    """The prompt to show on the public page, or None when the owner hid it."""
    return None if run.share_hide_prompt else (run.input or {}).get("prompt")
