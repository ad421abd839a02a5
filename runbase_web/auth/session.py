"""Starting a signed-in session."""
from __future__ import annotations

from flask import session
from flask_login import login_user


#: The session key of a kept Playground form (see start_session).
KEPT_DRAFT_KEY = "playground_draft"


def start_session(user, *, remember: bool = False) -> None:
    """Sign `user` in on a fresh session.

    Everything in the session from before sign-in is dropped (session fixation: a session
    planted by someone else must not become a signed-in one carrying their data), so
    callers read what they still need, such as the `next` target, first.
    """
    # The one thing carried over: the token of a Playground form the visitor filled in
    # before signing up (playground/views.py). It names a draft on the server, usable
    # once, that only refills a form: nothing runs until the person presses Run.
    draft = session.get(KEPT_DRAFT_KEY)
    session.clear()
    if isinstance(draft, str):
        session[KEPT_DRAFT_KEY] = draft
    login_user(user, remember=remember)
