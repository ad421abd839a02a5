"""Sign-up, sign-in and sign-out pages (plain forms: full-page posts with redirects)."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..services import accounts
from ..services.catalog import format_usd
from . import bp
from .redirects import safe_next

#: Shown for an unknown email and a wrong password alike, so accounts can't be probed.
BAD_LOGIN = "Email or password is incorrect."
TAKEN = "An account with this email already exists."


def _next() -> str | None:
    """The validated `next` of this request (query string or hidden form field)."""
    return safe_next(request.values.get("next"))


def _form_page(template: str, errors: dict[str, str], status: int = 200):
    """The sign-in or sign-up page, with the typed email kept and errors by field."""
    return render_template(template, next=_next(), errors=errors,
                           email=request.form.get("email", "")), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with email and password, then go back to `next` (or the dashboard)."""
    if current_user.is_authenticated:
        return redirect(_next() or url_for("web.dashboard"))
    if request.method == "GET":
        return _form_page("auth/login.html", {})
    user = accounts.authenticate(db.session, request.form.get("email", ""),
                                 request.form.get("password", ""))
    if user is None:
        return _form_page("auth/login.html", {"password": BAD_LOGIN}, 422)
    login_user(user)
    return redirect(_next() or url_for("web.dashboard"))


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    """Create an account with the free signup credit, sign in, then go back to `next`."""
    if current_user.is_authenticated:
        return redirect(_next() or url_for("playground.page"))
    if request.method == "GET":
        return _form_page("auth/signup.html", {})
    credit = current_app.config["SIGNUP_CREDIT_MICROS"]
    try:
        user = accounts.create_user(db.session, request.form.get("email", ""),
                                    request.form.get("password", ""), credit_micros=credit)
        db.session.commit()
    except accounts.AccountError as error:
        db.session.rollback()
        return _form_page("auth/signup.html", {error.field or "email": error.message}, 422)
    except IntegrityError:
        # Two sign-ups with one email at the same moment: the unique index decides.
        db.session.rollback()
        return _form_page("auth/signup.html", {"email": TAKEN}, 422)
    login_user(user)
    if credit:
        flash(f"Welcome to Runbase! Your account has {format_usd(credit)} of free credit.",
              "success")
    return redirect(_next() or url_for("playground.page"))


@bp.post("/logout")
def logout():
    """Sign out (POST only, with the CSRF token, so other sites can't sign people out)."""
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("playground.page"))
