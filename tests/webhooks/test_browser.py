"""Settings → Webhooks and the run page's delivery log in Chromium: CSRF on, strict CSP."""
from __future__ import annotations

import pytest
from flask import render_template_string
from playwright.sync_api import Page, expect

from runbase_web.extensions import db
from runbase_web.models import Run
from tests.web import PASSWORD
from tests.webhooks import account_secret, wait_for_delivery

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    """Production-like CSRF; the fetcher may reach the loopback receiver."""
    return {"WTF_CSRF_ENABLED": True, "FETCH_ALLOW_LOOPBACK": True}




@pytest.fixture
def run_page(app):
    """A stand-in run page: base.html with the partial included as the real run page does."""
    @app.get("/test-run-page/<run_id>")
    def stand_in(run_id):
        return render_template_string(
            '{% extends "base.html" %}{% block content %}'
            '{% include "web/webhooks/_deliveries.html" ignore missing %}{% endblock %}',
            run=db.session.get(Run, run_id))
    return "/test-run-page/"


def sign_in(page: Page, email: str) -> None:
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def test_secret_is_masked_revealed_and_rotated_after_confirmation(app, user, page: Page, problems):
    sign_in(page, user.email)
    page.goto("/settings/webhooks")
    field = page.locator("#webhook-secret")
    expect(field).to_have_attribute("type", "password")
    secret = field.input_value()
    assert secret == account_secret(app, user.id)

    page.get_by_role("button", name="Reveal").click()
    expect(field).to_have_attribute("type", "text")
    page.get_by_role("button", name="Hide").click()
    expect(field).to_have_attribute("type", "password")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Rotate secret").click()
    expect(field).to_have_value(secret)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.locator("#notices")).to_contain_text("New signing secret")
    assert page.locator("#webhook-secret").input_value() not in ("", secret)
    assert page.locator("#webhook-secret").input_value() == account_secret(app, user.id)


def test_run_page_log_loads_and_resends(run_page, app, client, auth, user, receiver, page: Page,
                                        problems):
    created = client.post("/api/v1/runs", headers=auth, json={
        "model": "local/sketch", "input": {"prompt": "hook"}, "webhook": receiver.url})
    run_id = created.get_json()["id"]
    wait_for_delivery(app, run_id)
    sign_in(page, user.email)
    page.goto(run_page + run_id)
    log = page.locator("section[data-webhook-log]")
    expect(log.locator("tr[data-attempt]")).to_have_count(1)
    expect(log).to_contain_text("HTTP 200")

    log.get_by_role("button", name="Resend").click()
    # The swapped-in log polls until the worker has sent the copy.
    expect(page.locator("section[data-webhook-log] tr[data-attempt]")).to_have_count(2, timeout=15_000)
    expect(page.locator("[data-delivery-status]")).to_have_text("delivered")
    assert len(receiver.received) == 2
    assert receiver.received[0].message_id == receiver.received[1].message_id
