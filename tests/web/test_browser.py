"""The Playground in a real browser (Debian Chromium via Playwright), CSRF on, strict CSP.

Each flow also checks that the page logged no Content-Security-Policy violation and
raised no JavaScript error: the CSP forbids inline script and style, so anything that
slipped in would show up here.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.pages import RUN_TIMEOUT_MS, newest_card, pick, sign_up, submit
from tests.web import PASSWORD

pytestmark = pytest.mark.browser

@pytest.fixture
def app_config():
    """Production-like: CSRF on (htmx sends the token from <body hx-headers>)."""
    return {"WTF_CSRF_ENABLED": True}


def test_image_run_end_to_end(page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    expect(page.locator("#price")).to_contain_text("$0.001")
    page.locator("#f-num_images").fill("2")
    page.locator("#f-num_images").blur()
    expect(page.locator("#price")).to_contain_text("$0.002")
    page.locator("#f-num_images").fill("1")
    page.locator("#f-num_images").blur()
    expect(page.locator("#price")).to_contain_text("$0.001")

    submit(page, "A cozy bookshop, watercolor style")
    card = newest_card(page)
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    image = card.locator("img")
    expect(image).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    expect(card.locator(".cost")).to_have_text("$0.001")
    expect(card).to_contain_text("A cozy bookshop, watercolor style")
    url = card.locator("[data-copy]").first.get_attribute("data-copy")
    assert re.match(r"^http://127\.0\.0\.1:\d+/files/generated/[\w-]+\.png$", url)
    expect(page.locator("#nav-balance")).to_have_text("$0.999")
    page.get_by_placeholder("Search provider/model…").fill("")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path="/tmp/playground.png")


def test_video_run_loads_metadata(page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch-video")
    page.locator("#f-duration").fill("1")
    submit(page, "Waves rolling onto a beach")
    card = newest_card(page)
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    video = card.locator("video")
    expect(video).to_have_attribute("preload", "metadata")
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video.element_handle())
    expect(card.locator(".cost")).to_have_text("$0.002")


def test_failed_run_shows_error_and_refund(page: Page, problems):
    sign_up(page)
    pick(page, "local/test")
    page.locator("#f-outcome").select_option("fail")
    submit(page, "this one fails")
    card = newest_card(page)
    expect(card).to_have_attribute("data-status", "failed", timeout=RUN_TIMEOUT_MS)
    expect(card.locator(".run-error-message")).not_to_be_empty()
    expect(card).to_contain_text("refunded $0.0001")
    expect(page.locator("#nav-balance")).to_have_text("$1.00")


def test_two_submits_keep_both_cards_newest_first(page: Page, problems):
    sign_up(page)
    pick(page, "local/test")
    submit(page, "first prompt")
    expect(page.locator("#cards [data-run-card]")).to_have_count(1)
    submit(page, "second prompt")
    cards = page.locator("#cards [data-run-card]")
    expect(cards).to_have_count(2)
    expect(cards.nth(0)).to_contain_text("second prompt")
    expect(cards.nth(1)).to_contain_text("first prompt")
    for index in range(2):
        expect(cards.nth(index)).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)


def test_invalid_form_is_swapped_in_with_the_error_then_cleared(page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    # Take the browser's own range check away, so the server's 422 answer is what shows.
    page.locator("#f-num_images").evaluate("input => { input.removeAttribute('max') }")
    page.locator("#f-num_images").fill("9")
    submit(page, "too many")
    expect(page.locator("#f-num_images-error")).to_have_text("must be at most 4")
    expect(page.locator("#f-prompt")).to_have_value("too many")
    expect(page.locator("#cards [data-run-card]")).to_have_count(0)
    page.locator("#f-num_images").fill("1")
    page.locator("#run-form button[type=submit]").click()
    expect(page.locator("#cards [data-run-card]")).to_have_count(1)
    expect(page.locator("#f-num_images-error")).to_have_count(0)


def test_anonymous_submit_signs_up_and_comes_back(page: Page, problems):
    page.goto("/playground")
    pick(page, "local/test")
    expect(page.locator("#f-outcome")).to_be_visible()
    page.locator("#f-outcome").select_option("fail")
    submit(page, "who am I")
    page.wait_for_url(re.compile(r"/auth/signup\?next="))  # sign-up first, for a visitor
    page.get_by_label("Email").fill("late@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/playground\?model=local(%2F|/)test&draft=1$"))
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/test")
    expect(page.locator("#f-prompt")).to_have_value("who am I")  # the form survived
    expect(page.locator("#f-outcome")).to_have_value("fail")
    page.locator("#run-form button[type=submit]").click()
    expect(page.locator("#cards [data-run-card]")).to_have_count(1)


def test_unavailable_model_cannot_be_submitted(page: Page, problems):
    page.goto("/playground?model=openai/gpt-image-1")
    expect(page.locator("#run-form button[type=submit]")).to_be_disabled()
    expect(page.locator("#run-form")).to_contain_text("needs OPENAI_API_KEY")
    page.get_by_placeholder("Search provider/model…").fill("seedance 2")
    expect(page.locator('[data-model-option][href$="model=bytedance/seedance-2"]')).to_be_visible()
    expect(page.locator('[data-model-option][href$="model=local/sketch"]')).to_be_hidden()


def test_keys_page(page: Page, problems):
    sign_up(page)
    page.goto("/settings/keys")
    page.get_by_label("Name").fill("my laptop")
    page.get_by_role("button", name="Create key").click()
    full_key = page.get_by_label("New API key").input_value()
    assert re.match(r"^sk-[\w-]{32,}$", full_key)
    page.get_by_role("button", name="Copy").first.click()
    page.screenshot(path="/tmp/keys.png", full_page=True)
    page.goto("/settings/keys")
    expect(page.locator(".keys-table")).to_contain_text(full_key[:10] + "…")
    assert full_key not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".empty-state")).to_contain_text("No keys yet")


def test_back_after_picking_a_model_reloads_a_full_page(page: Page, problems):
    page.goto("/playground?model=local/sketch")
    pick(page, "local/test")
    page.go_back()
    expect(page).to_have_url(re.compile(r"model=local/sketch$"))
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/sketch")
    expect(page.locator(".picker")).to_have_count(1)
    expect(page.locator("header.topbar")).to_have_count(1)


def test_account_menu_opens_without_script_and_signs_out(page: Page, problems):
    email = sign_up(page)
    menu = page.locator("details.account-menu")
    expect(menu.locator(".account-email")).to_have_text(email)
    expect(menu.get_by_role("link", name="Credits")).to_be_hidden()
    menu.locator("summary").click()
    menu.get_by_role("link", name="API keys").click()
    expect(page).to_have_url(re.compile(r"/settings/keys$"))
    page.locator("details.account-menu summary").click()
    expect(page.locator('.account-links a[aria-current="page"]')).to_have_text("API keys")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
