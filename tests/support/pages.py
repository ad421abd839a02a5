"""Steps the browser tests take through the real pages (Playwright): sign up, pick a
model, submit the Playground form, find the newest run card."""
from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from tests.web import PASSWORD

#: A run of the offline models takes well under this, even on a slow CI machine.
RUN_TIMEOUT_MS = 30_000
#: A local/test delay (delay_ms) after which a run is still in flight once a page has
#: loaded or reloaded, even on a slow, busy CI machine (one reload there took 3 s).
STILL_RUNNING_MS = 8_000


def sign_up(page: Page, next_path: str = "/playground") -> str:
    """Create an account through the sign-up form; returns its email."""
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(f"/auth/signup?next={next_path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/playground"))
    return email


def pick(page: Page, model_id: str) -> None:
    """Choose a model in the picker through its search box."""
    page.get_by_placeholder("Search provider/model…").fill(model_id)
    page.locator(f'[data-model-option][href$="model={model_id}"]').click()
    expect(page.locator('#run-form input[name="model"]')).to_have_value(model_id)
    expect(page).to_have_url(re.compile(r"model=" + re.escape(model_id)))


def submit(page: Page, prompt: str) -> None:
    """Fill the prompt and press Run."""
    page.locator("#f-prompt").fill(prompt)
    page.locator("#run-form button[type=submit]").click()


def newest_card(page: Page):
    return page.locator("#cards [data-run-card]").first
