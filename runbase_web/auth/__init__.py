"""Sign up, sign in, sign out: email + password or Google sessions for the browser
(Flask-Login)."""
from __future__ import annotations

from flask import redirect, url_for

from .. import htmx
from ..extensions import db, login_manager
from ..services import accounts
from . import google, views  # noqa: F401  (register the routes on bp)
from .blueprint import bp
from .redirects import return_path

__all__ = ["bp"]


@login_manager.user_loader
def load_user(user_id: str):
    """The signed-in account for Flask-Login."""
    return accounts.get_user(db.session, int(user_id))


@login_manager.unauthorized_handler
def unauthorized():
    """Send a visitor to sign in, and back to where they were afterwards.

    htmx requests get `HX-Redirect` with 401: a 302 would be followed by the XHR and
    the sign-in page swapped into a fragment (e.g. into the Playground's card list).
    """
    login_url = url_for("auth.login", next=return_path())
    if htmx.is_htmx():
        return htmx.hx_redirect(login_url, status=401)
    return redirect(login_url)
