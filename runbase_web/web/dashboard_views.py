"""The home page (the Playground) and the dashboard: balance and the newest runs."""
from __future__ import annotations

from flask import redirect, render_template, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..services import runs
from .blueprint import bp

#: How many runs the dashboard shows (the gallery has them all).
RECENT_RUNS = 8


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
