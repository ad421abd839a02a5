"""Settings → Webhooks, a run's delivery log, Resend, and who may see or resend what."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import render_template_string

from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from tests.webhooks import deliver_due
from tests.web import HTMX, sign_in
from tests.webhooks import Rejected, account_secret, attempts_of, deliveries_of, verify


@pytest.fixture
def ended(app, client, auth, create_run):
    """Factory: a run with a webhook to `url`, canceled (so ended) without a worker."""
    def make(url: str) -> str:
        run = create_run(url, delay_ms=60_000)
        assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200
        return run["id"]
    return make


def secret_input(page: str) -> str:
    match = re.search(r'<input id="webhook-secret"[^>]*>', page)
    assert match, page
    return match.group(0)


def test_settings_page_needs_a_session(client):
    response = client.get("/settings/webhooks")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_settings_page_shows_the_secret_masked_with_reveal_and_copy(app, client, user):
    sign_in(client, user.email)
    response = client.get("/settings/webhooks")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    secret = account_secret(app, user.id)
    field = secret_input(page)
    assert 'type="password"' in field and f'value="{secret}"' in field
    assert 'data-reveal="webhook-secret"' in page and f'data-copy="{secret}"' in page
    assert "js/webhooks.js" in page and "css/webhooks.css" in page
    assert 'action="/settings/webhooks/rotate"' in page and "data-confirm=" in page
    assert "webhook-signature" in page and "No deliveries yet" in page
    # Created once, then the same on every visit.
    assert f'value="{secret}"' in secret_input(client.get("/settings/webhooks").get_data(as_text=True))


def test_rotating_the_secret_changes_the_signatures(app, client, user, receiver, ended):
    old = receiver.secret
    run_id = ended(receiver.url)
    deliver_due(app)
    sign_in(client, user.email)
    response = client.post("/settings/webhooks/rotate")
    assert response.status_code == 303 and response.headers["Location"].endswith("/settings/webhooks")
    new = account_secret(app, user.id)
    assert new != old and new.startswith("whsec_")
    assert f'value="{new}"' in secret_input(client.get("/settings/webhooks").get_data(as_text=True))

    [delivery] = deliveries_of(app, run_id)
    receiver.secret = new
    assert client.post(f"/runs/{run_id}/webhooks/{delivery.id}/resend").status_code == 303
    deliver_due(app)
    first, second = receiver.received
    assert first.message_id == second.message_id and first.body == second.body
    assert second.status == 200 and second.rejected is None  # verified with the new secret
    with pytest.raises(Rejected):
        verify(old, second.headers, second.body)
    with pytest.raises(Rejected):
        verify(new, first.headers, first.body)


def test_run_log_lists_every_attempt(app, client, user, receiver, ended):
    receiver.script.append(500)
    run_id = ended(receiver.url)
    deliver_due(app)
    [delivery] = deliveries_of(app, run_id)
    deliver_due(app, now=delivery.next_attempt_at)
    sign_in(client, user.email)
    response = client.get(f"/runs/{run_id}/webhooks", headers=HTMX)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert delivery.id in page and receiver.url in page
    assert page.count("<tr data-attempt>") == 2
    assert page.index("HTTP 200") < page.index("HTTP 500")  # newest first
    assert 'data-delivery-status="delivered"' in page and " ms</td>" in page
    assert f'action="/runs/{run_id}/webhooks/{delivery.id}/resend"' in page
    assert "every 3s" not in page  # nothing left to wait for: no polling


def test_run_log_shows_the_guard_refusal(app, client, user, ended):
    app.config["FETCH_ALLOW_LOOPBACK"] = False
    run_id = ended("http://169.254.169.254/latest/meta-data/<b>")
    deliver_due(app)
    sign_in(client, user.email)
    page = client.get(f"/runs/{run_id}/webhooks", headers=HTMX).get_data(as_text=True)
    assert "Refused by the outbound guard" in page and 'data-delivery-status="failed"' in page
    assert "<b>" not in page and "&lt;b&gt;" in page


def test_run_log_polls_while_the_run_is_active(app, client, auth, user, create_run):
    run = create_run("https://hooks.example.org/hook", delay_ms=60_000)
    sign_in(client, user.email)
    page = client.get(f"/runs/{run['id']}/webhooks", headers=HTMX).get_data(as_text=True)
    assert "Sent when the run ends" in page and 'hx-trigger="every 3s"' in page
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).status_code == 200


def test_run_without_webhook_has_an_empty_log(app, client, auth, user):
    response = client.post("/api/v1/runs", headers=auth,
                           json={"model": "local/test", "input": {"prompt": "x", "delay_ms": 60_000}})
    run_id = response.get_json()["id"]
    sign_in(client, user.email)
    log = client.get(f"/runs/{run_id}/webhooks", headers=HTMX)
    assert log.status_code == 200 and log.get_data(as_text=True).strip() == ""
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth).status_code == 200


def test_resend_queues_an_attempt_now_with_the_same_id(app, client, user, receiver, ended):
    run_id = ended(receiver.url)
    deliver_due(app)
    [delivery] = deliveries_of(app, run_id)
    assert delivery.status == "delivered"
    sign_in(client, user.email)
    before = utcnow()
    response = client.post(f"/runs/{run_id}/webhooks/{delivery.id}/resend", headers=HTMX)
    assert response.status_code == 200
    assert 'data-delivery-status="pending"' in response.get_data(as_text=True)
    [queued] = deliveries_of(app, run_id)
    assert queued.status == "pending" and queued.next_attempt_at >= before - timedelta(seconds=1)
    assert deliver_due(app) == 1
    assert [r.message_id for r in receiver.received] == [delivery.id, delivery.id]
    assert len(receiver.handled) == 1  # the receiver acknowledged the copy without acting
    assert len(attempts_of(app, delivery.id)) == 2
    assert deliveries_of(app, run_id)[0].status == "delivered"


def test_resend_of_a_failed_delivery_gets_one_more_try(app, client, user, receiver, ended):
    receiver.script.append(410)
    run_id = ended(receiver.url)
    deliver_due(app)
    [delivery] = deliveries_of(app, run_id)
    assert delivery.status == "failed"
    sign_in(client, user.email)
    assert client.post(f"/runs/{run_id}/webhooks/{delivery.id}/resend").status_code == 303
    deliver_due(app)
    assert deliveries_of(app, run_id)[0].status == "delivered"


def test_another_account_can_neither_see_nor_resend(app, client, user, make_user, receiver, ended):
    run_id = ended(receiver.url)
    deliver_due(app)
    [delivery] = deliveries_of(app, run_id)
    other = make_user("mallory@example.com")
    sign_in(client, other.email)
    assert client.get(f"/runs/{run_id}/webhooks", headers=HTMX).status_code == 404
    assert client.post(f"/runs/{run_id}/webhooks/{delivery.id}/resend").status_code == 404
    assert client.post(f"/runs/{run_id}/webhooks/{delivery.id}/resend", headers=HTMX).status_code == 404
    assert delivery.id not in client.get("/settings/webhooks").get_data(as_text=True)
    assert deliveries_of(app, run_id)[0].status == "delivered" and deliver_due(app) == 0
    # The owner cannot resend a delivery under another run's id either.
    client.post("/auth/logout")
    sign_in(client, user.email)
    assert client.post(f"/runs/run_doesnotexist/webhooks/{delivery.id}/resend").status_code == 404
    page = client.get("/settings/webhooks").get_data(as_text=True)
    assert delivery.id in page and run_id in page


@pytest.fixture
def include_page(app):
    """A page that includes the partial exactly as the run page does (registered before
    the app's first request, as Flask requires)."""
    @app.get("/test-include/<run_id>")
    def include(run_id):
        return render_template_string('{% include "web/webhooks/_deliveries.html" ignore missing %}',
                                      run=db.session.get(Run, run_id))
    return "/test-include/"


def test_the_run_page_include_loads_the_log_for_the_owner_only(include_page, app, client, user,
                                                              make_user, receiver, ended):
    run_id = ended(receiver.url)
    sign_in(client, user.email)
    slot = client.get(include_page + run_id).get_data(as_text=True)
    assert f'hx-get="/runs/{run_id}/webhooks"' in slot and 'hx-trigger="load"' in slot
    client.post("/auth/logout")
    sign_in(client, make_user().email)
    assert client.get(include_page + run_id).get_data(as_text=True).strip() == ""


def test_the_real_run_page_loads_the_log(app, client, user, receiver, ended):
    run_id = ended(receiver.url)
    sign_in(client, user.email)
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert f'hx-get="/runs/{run_id}/webhooks"' in page and "css/webhooks.css" in page
