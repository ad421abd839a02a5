"""Sign up, sign in, sign out: email + password or Google sessions for the browser
(Flask-Login)."""
from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from .. import htmx
from ..extensions import db, login_manager
from ..models import User
from .redirects import return_path

bp = Blueprint("auth", __name__, url_prefix="/auth")


@login_manager.user_loader
def load_user(user_id: str):
    """The signed-in account for Flask-Login."""
    return db.session.get(User, int(user_id))


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


from . import google, views  # noqa: E402,F401  (register the routes on bp)
