"""Sign-up, sign-in and sign-out pages (plain forms: full-page posts with redirects)."""
from __future__ import annotations

from flask import current_app, flash, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user, logout_user
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..ratelimit import auth_rate_limit, seconds_until_reset
from ..services import accounts
from ..money import format_usd
from . import google
from .blueprint import bp
from .redirects import safe_next
from .session import start_session

#: Shown for an unknown email and a wrong password alike, so accounts can't be probed.
BAD_LOGIN = "Email or password is incorrect."
TAKEN = "An account with this email already exists."
TOO_MANY = "Too many attempts, try again in {seconds} seconds."


def _next() -> str | None:
    """The validated `next` of this request (query string or hidden form field)."""
    return safe_next(request.values.get("next"))


def _form_page(template: str, errors: dict[str, str], status: int = 200, *,
               alert: str | None = None):
    """The sign-in or sign-up page, with the typed email kept and errors by field."""
    return render_template(template, next=_next(), errors=errors, alert=alert,
                           email=request.form.get("email", ""),
                           remember=bool(request.form.get("remember")),
                           google_enabled=google.is_configured()), status


def _too_many(template: str):
    """on_breach for the auth limits: the same form, answered 429 with when to retry."""
    def answer(request_limit):
        # Called once per breached limit (IP, email): tell the longest wait.
        seconds = max(g.get("auth_retry_after", 0), seconds_until_reset(request_limit))
        g.auth_retry_after = seconds
        body, status = _form_page(template, {}, 429, alert=TOO_MANY.format(seconds=seconds))
        response = make_response(body, status)
        response.headers["Retry-After"] = str(seconds)
        return response
    return answer


def _failed_login(response) -> bool:
    """Only wrong credentials count against the limit; signing in fine never does."""
    return response.status_code == 422


def _not_refused(response) -> bool:
    """Every sign-up attempt counts (each may mint free credit), except the 429s."""
    return response.status_code != 429


@bp.route("/login", methods=["GET", "POST"])
@auth_rate_limit(on_breach=_too_many("auth/login.html"), deduct_when=_failed_login)
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
    db.session.commit()  # a rehashed password (new scheme or parameters)
    next_target = _next()
    start_session(user, remember=bool(request.form.get("remember")))
    return redirect(next_target or url_for("web.dashboard"))


@bp.route("/signup", methods=["GET", "POST"])
@auth_rate_limit(on_breach=_too_many("auth/signup.html"), deduct_when=_not_refused)
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
    except accounts.AccountError as error:  # refused before anything was written
        return _form_page("auth/signup.html", {error.field or "email": error.message}, 422)
    except IntegrityError:
        # Two sign-ups with one email at the same moment: the unique index decides.
        db.session.rollback()
        return _form_page("auth/signup.html", {"email": TAKEN}, 422)
    next_target = _next()
    start_session(user)
    if credit:
        flash(f"Welcome to Runbase! Your account has {format_usd(credit)} of free credit.",
              "success")
    return redirect(next_target or url_for("playground.page"))


@bp.post("/logout")
def logout():
    """Sign out (POST only, with the CSRF token, so other sites can't sign people out)."""
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("playground.page"))
