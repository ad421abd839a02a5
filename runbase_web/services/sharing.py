"""Share links: a public, unguessable /s/<token> page for one succeeded run (and the
link mechanism a grid's /g/<token> shares, services/batches.py).

The token is the capability: revoking clears it, and sharing again mints a new one, so
a revoked link never comes back to life.
"""
from __future__ import annotations

import copy
import re
import secrets
from typing import Protocol

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


class Shareable(Protocol):
    """What a share link is kept on: a run or a grid (Batch)."""

    share_token: str | None
    shared_at: object
    share_hide_prompt: bool


def grant(item: Shareable, *, hide_prompt: bool) -> None:
    """Give `item` a link, or keep the one it has (and its shared_at); set whether its
    prompts are hidden."""
    if item.share_token is None:
        item.share_token = secrets.token_urlsafe(24)
        item.shared_at = utcnow()
    item.share_hide_prompt = bool(hide_prompt)


def withdraw(item: Shareable) -> None:
    """Take `item`'s link away: it answers 404 from now on, and a new grant mints a new one."""
    item.share_token = None
    item.shared_at = None
    item.share_hide_prompt = False


def find_by_token(session: Session, model: type, token: str):
    """The `model` row (Run or Batch) shared under `token`, or None (unknown, revoked or
    malformed token)."""
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        return None
    return session.scalar(select(model).where(model.share_token == token))


def public_input(data: dict | None, *, hide_prompt: bool) -> dict:
    """A run's input as the public may see it: without the prompt when it is hidden."""
    shown = copy.deepcopy(data or {})
    if hide_prompt:
        shown.pop("prompt", None)
    return shown


def public_prompt(data: dict | None, *, hide_prompt: bool) -> str | None:
    """A run's prompt as the public may see it, or None when the owner hid it."""
    return None if hide_prompt else (data or {}).get("prompt")


def share_run(session: Session, user_id: int, run_id: str, *, hide_prompt: bool) -> Run:
    """Share the user's succeeded run (or update whether its prompt is hidden).

    An already shared run keeps its token and its shared_at. Raises RunNotFound for
    another account's run and NotShareable for a run that has no outputs to show.
    """
    run = runs.get_run(session, user_id, run_id)
    if run.status != RunStatus.SUCCEEDED.value:
        raise NotShareable(run, "Only a run that succeeded can be shared.")
    grant(run, hide_prompt=hide_prompt)
    session.flush()
    return run


def revoke_share(session: Session, user_id: int, run_id: str) -> Run:
    """Stop sharing the user's run: its link answers 404 from now on."""
    run = runs.get_run(session, user_id, run_id)
    withdraw(run)
    session.flush()
    return run


def find_shared(session: Session, token: str) -> Run | None:
    """The run shared under `token`, or None (unknown, revoked or malformed token, or a
    run that has not succeeded)."""
    run = find_by_token(session, Run, token)
    if run is None or run.status != RunStatus.SUCCEEDED.value:
        return None
    return run


def shared_input(run: Run) -> dict:
    """The run's input as the public may see it: without the prompt when it is hidden."""
    return public_input(run.input, hide_prompt=run.share_hide_prompt)


def shared_prompt(run: Run) -> str | None:
    """The prompt to show on the public page, or None when the owner hid it."""
    return public_prompt(run.input, hide_prompt=run.share_hide_prompt)
