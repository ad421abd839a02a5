"""Dashboard and Settings → API keys."""
from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..errors import RunbaseError
from ..extensions import db
from ..services import keys, runs
from . import bp

#: How many runs the dashboard lists.
RECENT_RUNS = 20


@bp.get("/")
def index():
    """The home page is the Playground."""
    return redirect(url_for("playground.page"))


@bp.get("/dashboard")
@login_required
def dashboard():
    """Balance and the newest runs of the signed-in account."""
    recent = runs.recent_runs(db.session, current_user.id, RECENT_RUNS)
    return render_template("web/dashboard.html", runs=recent)


def _keys_page(*, new_key: str | None = None, errors: dict | None = None, status: int = 200):
    """The keys page; a just-created key is shown in full this once and never cached."""
    page = render_template("web/keys.html", keys=keys.list_keys(db.session, current_user.id),
                           new_key=new_key, errors=errors or {},
                           name=request.form.get("name", "") if errors else "")
    response = make_response(page, status)
    if new_key:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/settings/keys")
@login_required
def api_keys():
    """The account's API keys: name, prefix, created, last used, spent."""
    return _keys_page()


@bp.post("/settings/keys")
@login_required
def create_api_key():
    """Create a key and show it once (rendered, not redirected: it must not sit in a
    cookie or a flash message waiting for the next page)."""
    try:
        _key, full_key = keys.create_key(db.session, current_user.id,
                                         request.form.get("name", ""))
        db.session.commit()
    except RunbaseError as error:
        db.session.rollback()
        return _keys_page(errors={error.field or "name": error.message}, status=422)
    return _keys_page(new_key=full_key, status=201)


@bp.post("/settings/keys/<int:key_id>/delete")
@login_required
def delete_api_key(key_id: int):
    """Delete one of the account's keys; it stops authenticating at once."""
    if not keys.delete_key(db.session, current_user.id, key_id):
        abort(404)
    db.session.commit()
    flash("API key deleted. Requests using it are now refused.", "info")
    return redirect(url_for("web.api_keys"), 303)
