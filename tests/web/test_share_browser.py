"""Share links in a real browser: share from the run page, open the link in a fresh
context without a session, hide the prompt, revoke; CSRF on, strict CSP."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.pages import RUN_TIMEOUT_MS, pick, sign_up

pytestmark = pytest.mark.browser

PROMPT = "A paper boat on a puddle"


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}




def test_share_open_anonymously_hide_prompt_and_revoke(page: Page, problems, chromium, live_server):
    email = sign_up(page)
    pick(page, "local/test")
    page.locator("#f-prompt").fill(PROMPT)
    page.locator("#f-prompt").press("Control+Enter")
    card = page.locator("#cards [data-run-card]").first
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    run_id = card.get_attribute("data-run-id")

    page.goto(f"/runs/{run_id}")
    # Share sits in the header next to Rerun; it opens from the keyboard and closes with Escape.
    menu = page.locator(".run-actions details[data-share-menu]")
    summary = menu.locator("summary")
    summary.focus()
    page.keyboard.press("Enter")
    panel = page.locator("[data-share-panel]")
    expect(panel).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(summary).to_be_focused()
    summary.click()
    panel.get_by_role("button", name="Create share link").click()
    link_box = panel.locator("[data-share-link]")
    expect(link_box).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/s/[\w-]{32}$"))
    link = link_box.input_value()

    stranger = chromium.new_context()  # no cookies: not signed in
    try:
        visit = stranger.new_page()
        stranger_problems: list[str] = []
        visit.on("console", lambda msg: stranger_problems.append(msg.text)
                 if "Content Security Policy" in msg.text else None)
        response = visit.goto(link)
        assert response.status == 200
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "noindex" in response.headers["x-robots-tag"]
        image = visit.locator("[data-shared-run] img")
        expect(image).to_have_count(1)
        visit.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=image.element_handle())
        expect(visit.locator("[data-shared-prompt]")).to_have_text(PROMPT)
        og_image = visit.locator('meta[property="og:image"]').get_attribute("content")
        assert og_image == live_server + image.get_attribute("src")
        assert visit.locator('meta[property="og:url"]').get_attribute("content") == link
        assert visit.locator('meta[name="twitter:card"]').get_attribute("content") == "summary_large_image"
        content = visit.content()
        assert email not in content and run_id not in content

        # The owner hides the prompt: the box saves as soon as it changes.
        panel.get_by_label("Hide the prompt").check()
        expect(panel).not_to_contain_text("and the prompt")
        visit.reload()
        expect(visit.locator("[data-shared-run] img")).to_have_count(1)
        expect(visit.locator("[data-shared-prompt]")).to_have_count(0)

        # "Try this in the Playground" restores the model, without the hidden prompt.
        visit.get_by_role("link", name="Try this in the Playground").click()
        visit.wait_for_url(re.compile(r"/playground\?share="))
        expect(visit.locator('#run-form input[name="model"]')).to_have_value("local/test")
        expect(visit.locator("#f-prompt")).to_have_value("")

        panel.get_by_role("button", name="Revoke link").click()
        expect(panel.get_by_role("button", name="Create share link")).to_be_visible()
        assert visit.goto(link).status == 404
        assert stranger_problems == []
    finally:
        stranger.close()
