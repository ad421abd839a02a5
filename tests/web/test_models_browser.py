"""The catalog in a real browser (Debian Chromium via Playwright), CSRF on, strict CSP:
filter the catalog with htmx, open a model's page and run it from the embedded form."""
from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.support.pages import RUN_TIMEOUT_MS
from tests.web import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    """Production-like: CSRF on (htmx sends the token from <body hx-headers>)."""
    return {"WTF_CSRF_ENABLED": True}


def sign_up(page: Page, next_path: str) -> None:
    """Create an account through the sign-up form and come back to `next_path`."""
    page.goto(f"/auth/signup?next={next_path}")
    page.get_by_label("Email").fill(f"user-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(re.escape(next_path) + "$"))


def test_filter_then_run_from_the_model_page(page: Page, problems):
    sign_up(page, "/models")
    page.locator("#filter-provider").select_option("local")
    expect(page).to_have_url(re.compile(r"/models\?.*provider=local"))
    expect(page.locator("[data-model-card]")).to_have_count(3)
    page.locator("#filter-q").fill("video")
    expect(page.locator("[data-model-card]")).to_have_count(1)
    page.locator("#filter-q").fill("sketch")
    expect(page.locator("[data-model-card]")).to_have_count(2)
    expect(page.locator("header.topbar")).to_have_count(1)  # results swapped, not the page

    page.locator('[data-model-card="local/sketch"] h2 a').click()
    page.wait_for_url(re.compile(r"/models/local/sketch$"))
    expect(page.locator("#availability")).to_contain_text("Available on this server")
    expect(page.locator("#price")).to_contain_text("$0.001")
    page.locator("#f-prompt").fill("A lighthouse at dusk, from the model page")
    page.locator("#run-form button[type=submit]").click()

    card = page.locator("#cards [data-run-card]").first
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    image = card.locator("img")
    expect(image).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    expect(card.locator(".cost")).to_have_text("$0.001")
    expect(page).to_have_url(re.compile(r"/models/local/sketch$"))  # stayed on the page
    expect(page.locator("#nav-balance")).to_have_text("$0.999")
    page.screenshot(path="/tmp/model-page.png", full_page=True)
