"""S5 in a real browser: the XSS corpus stored as prompts (API) and key names renders
inert. No injected script runs, no dialog opens, no injected request fires (to a
"pwned" URL, or htmx's hx-get="/settings/keys" trigger), and the CSP logs no violation
(which an escaping bug would cause when the CSP blocked the injected inline code)."""
from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Page

from runbase_web.web.dashboard_views import RECENT_RUNS

from tests.security import XSS_CORPUS
from tests.web import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


@pytest.fixture
def seen(page: Page):
    """Requests the page makes (with whether each is a navigation), dialogs, page errors
    and CSP messages, as they happen."""
    record = {"requests": [], "dialogs": [], "problems": []}
    page.on("request", lambda r: record["requests"].append((r.url, r.is_navigation_request())))
    page.on("dialog", lambda d: (record["dialogs"].append(d.message), d.dismiss()))
    page.on("pageerror", lambda error: record["problems"].append(f"pageerror: {error}"))
    page.on("console", lambda msg: record["problems"].append(msg.text)
            if "Content Security Policy" in msg.text else None)
    return record


def test_corpus_is_inert_in_the_browser(page: Page, seen, live_server, user, api_key, make_key):
    run_ids = []
    for item in XSS_CORPUS:
        response = requests.post(f"{live_server}/api/v1/runs", timeout=10,
                                 headers={"Authorization": f"Bearer {api_key}"},
                                 json={"model": "local/sketch", "input": {"prompt": item}})
        assert response.status_code == 201, response.text
        run_ids.append(response.json()["id"])
    for item in XSS_CORPUS:
        make_key(user, item)

    page.goto("/auth/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    # The dashboard shows the newest runs only (the gallery has them all).
    pages = {"/dashboard": XSS_CORPUS[-RECENT_RUNS:], "/settings/keys": XSS_CORPUS, "/runs": [],
             f"/runs/{run_ids[0]}": [XSS_CORPUS[0]], f"/runs/{run_ids[3]}": [XSS_CORPUS[3]],
             f"/runs/{run_ids[4]}": [XSS_CORPUS[4]]}
    for path, shown in pages.items():
        page.goto(path)
        page.wait_for_load_state("networkidle")
        text = page.inner_text("main")
        for item in shown:  # on the page as text, exactly as typed
            assert item in text, (path, item)

    fired = [url for url, _nav in seen["requests"] if "pwned" in url or url.endswith("/x")]
    assert fired == []
    htmx_to_keys = [url for url, nav in seen["requests"]
                    if url.endswith("/settings/keys") and not nav]
    assert htmx_to_keys == []
    assert seen["dialogs"] == []
    assert seen["problems"] == []
