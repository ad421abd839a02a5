"""Tests of the browser side: auth, keys page, Playground (test client and Chromium).

Small helpers shared by these modules live here.
"""
from __future__ import annotations

import re

from runbase_web.extensions import db
from runbase_web.models import Run, User

PASSWORD = "password123"
HTMX = {"HX-Request": "true"}


def sign_in(client, email: str, password: str = PASSWORD):
    """Sign the test client in through the real form; returns the response."""
    response = client.post("/auth/login", data={"email": email, "password": password})
    assert response.status_code == 302, response.data
    return response


def balance_of(app, user_id: int) -> int:
    """A user's balance as stored."""
    with app.app_context():
        return db.session.get(User, user_id).balance_micros


def run_count(app) -> int:
    """How many runs exist."""
    with app.app_context():
        return db.session.query(Run).count()


def field_error(html: str, field: str) -> str | None:
    """The error text shown under the form field `field`, or None."""
    match = re.search(rf'<p class="field-error" id="f-{re.escape(field)}-error">([^<]*)</p>', html)
    return match.group(1) if match else None


def card_root(html: str) -> str:
    """The opening tag of the status card in `html`."""
    match = re.search(r"<article [^>]*data-run-card[^>]*>", html)
    assert match, html
    return match.group(0)


def playground_run(app, client, data: dict) -> str:
    """Submit the Playground form (as htmx does) and wait until the run has ended; its id."""
    from tests.conftest import wait_for_run
    response = client.post("/playground/runs", data=data, headers=HTMX)
    assert response.status_code == 201, response.text
    run_id = re.search(r'id="run-(run_[a-z0-9]+)"', response.text).group(1)
    wait_for_run(app, run_id, timeout=60)
    return run_id
