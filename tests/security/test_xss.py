"""S5: user text (prompts stored through the API, key names) renders as escaped text on
every page that shows it, and adds no live markup (no handlers, scripts, htmx triggers)."""
from __future__ import annotations

import pytest
from markupsafe import escape

from runbase_web.web.dashboard_views import RECENT_RUNS
from tests.security import XSS_CORPUS, injected_markup
from tests.web import HTMX, sign_in


@pytest.fixture
def stored(client, user, auth):
    """The corpus stored as prompts (API) and key names (keys page); returns run ids."""
    run_ids = []
    for item in XSS_CORPUS:
        response = client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": item}},
                               headers=auth)
        assert response.status_code == 201, response.text
        run_ids.append(response.get_json()["id"])
    sign_in(client, user.email)
    for item in XSS_CORPUS:
        assert client.post("/settings/keys", data={"name": item}).status_code == 201
    return run_ids


def assert_inert(html: str, *, expect_text: bool = True, shown=XSS_CORPUS) -> None:
    assert injected_markup(html) == []
    if expect_text:
        for item in shown:
            assert str(escape(item)) in html, item


def test_the_inspector_would_catch_unescaped_output():
    """The check is meaningful: the raw corpus pasted into a page is flagged, item by item."""
    for item in XSS_CORPUS:
        if "{{" in item:
            continue  # template syntax is only dangerous if rendered as a template
        assert injected_markup(f"<p>{item}</p>"), item
    breakout = next(item for item in XSS_CORPUS if item.startswith('"><'))
    assert injected_markup(f'<input value="{breakout}">')


def test_dashboard(client, stored):
    page = client.get("/dashboard")
    assert page.status_code == 200
    # The dashboard shows the newest runs only (the gallery has them all).
    assert_inert(page.text, shown=XSS_CORPUS[-RECENT_RUNS:])


def test_keys_page(client, stored):
    page = client.get("/settings/keys")
    assert page.status_code == 200
    assert_inert(page.text)


def test_key_edit_page(app, client, stored):
    from runbase_web.extensions import db
    from runbase_web.models import ApiKey
    with app.app_context():
        key_ids = [k.id for k in db.session.query(ApiKey).filter(ApiKey.name.in_(XSS_CORPUS))]
    assert len(key_ids) == len(XSS_CORPUS)
    for key_id in key_ids:
        page = client.get(f"/settings/keys/{key_id}/edit")
        assert page.status_code == 200
        assert_inert(page.text, expect_text=False)


def test_playground_cards_and_run_pages(client, stored):
    for run_id, item in zip(stored, XSS_CORPUS):
        for url, headers in ((f"/playground/runs/{run_id}/card", HTMX), (f"/runs/{run_id}", {})):
            page = client.get(url, headers=headers)
            assert page.status_code == 200, url
            assert injected_markup(page.text) == [], url
            assert str(escape(item)) in page.text, url


def test_playground_card_prompt_is_hx_disabled(client, stored):
    """Second line of defence: htmx ignores anything inside the prompt container."""
    page = client.get(f"/playground/runs/{stored[3]}/card", headers=HTMX).text
    assert f'<p class="run-prompt" hx-disable>{escape(XSS_CORPUS[3])}</p>' in page


def test_runs_history(client, stored):
    page = client.get("/runs")
    assert page.status_code == 200
    assert injected_markup(page.text) == []
