"""Starting a signed-in session."""
from __future__ import annotations

from flask import session
from flask_login import login_user


def start_session(user, *, remember: bool = False) -> None:
    """Sign `user` in on a fresh session.

    Everything in the session from before sign-in is dropped (session fixation: a session
    planted by someone else must not become a signed-in one carrying their data), so
    callers read what they still need, such as the `next` target, first.
    """
    session.clear()
    login_user(user, remember=remember)
