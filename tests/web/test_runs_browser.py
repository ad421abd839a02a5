"""The runs pages in a real browser (Debian Chromium via Playwright), CSRF on, strict CSP:
rerun from a run page, the iteration flow (Edit & rerun with a changed prompt, then the
diff), and picking two runs in the gallery to compare them.

Each flow also checks that the page logged no CSP violation and raised no JavaScript error.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.services import history, run_creation
from tests.conftest import wait_for_run
from tests.support.pages import RUN_TIMEOUT_MS, STILL_RUNNING_MS
from tests.web import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    """Production-like: CSRF on (htmx sends the token from <body hx-headers>)."""
    return {"WTF_CSRF_ENABLED": True}


@pytest.fixture
def member(make_user):
    """An account with $1.00."""
    return make_user("iterate@example.com")


def sign_in(page: Page, email: str) -> None:
    """Sign in through the login form."""
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def api_run(app, user, prompt: str, *, model: str = "local/test", **extra) -> str:
    """A run created the way POST /api/v1/runs creates one; the embedded worker runs it."""
    with app.app_context():
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user.id, api_key_id=None, model_id=model,
                                      raw_input={"prompt": prompt, **extra})
        db.session.commit()
        run_id = run.id
    state.wake_worker(app)
    return run_id


def test_run_page_polls_zooms_copies_and_reruns(app, page: Page, problems, member):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, member.email)
    run_id = api_run(app, member, "a paper lighthouse", delay_ms=STILL_RUNNING_MS)
    page.goto(f"/runs/{run_id}")
    live = page.locator("#run-live")
    expect(live).not_to_have_attribute("data-status", "succeeded")
    expect(page.locator("[data-cancel]")).to_be_visible()
    # The status part polls itself until the run ends.
    expect(live).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("[data-cancel]")).to_have_count(0)
    expect(page.locator(".timeline-step")).to_have_count(3)

    image = live.locator("a[data-lightbox] img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    image.click()
    zoomed = page.locator("dialog.lightbox")
    expect(zoomed).to_be_visible()
    assert zoomed.locator("img").get_attribute("src") == live.locator("a[data-lightbox]").get_attribute("href")
    page.keyboard.press("Escape")
    expect(zoomed).to_be_hidden()
    assert page.url.endswith(f"/runs/{run_id}")

    page.locator('[data-copy-snippet="curl"]').click()
    expect(page.locator('[data-copy-snippet="curl"]')).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "$RUNBASE_API_KEY" in copied and '"prompt": "a paper lighthouse"' in copied

    page.locator("[data-rerun]").click()
    page.wait_for_url(re.compile(r"/runs/run_\w+$"))
    child_id = page.url.rsplit("/", 1)[1]
    assert child_id != run_id
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(page.locator(f'[data-parent] a[href="/runs/{run_id}"]')).to_be_visible()
    expect(page.locator("[data-no-changes]")).to_be_visible()
    expect(page.locator("#nav-balance")).to_have_text("$0.9998")
    page.locator(f'[data-parent] a[href="/runs/{run_id}"]').click()
    expect(page.locator(f'[data-children] a[href="/runs/{child_id}"]')).to_be_visible()


def test_edit_and_rerun_with_a_changed_prompt_shows_the_diff(app, page: Page, problems, member):
    sign_in(page, member.email)
    page.goto("/playground?model=local/test")
    page.locator("#f-prompt").fill("a red fox")
    page.locator("#run-form button[type=submit]").click()
    first_card = page.locator("#cards [data-run-card]").first
    expect(first_card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    first_id = first_card.get_attribute("data-run-id")

    page.goto(f"/runs/{first_id}")
    page.locator("[data-edit-rerun]").click()
    page.wait_for_url(re.compile(rf"/playground\?from={first_id}$"))
    expect(page.locator("#f-prompt")).to_have_value("a red fox")
    page.locator("#f-prompt").fill("a red fox in the snow")
    page.locator("#run-form button[type=submit]").click()
    second_card = page.locator("#cards [data-run-card]").first
    expect(second_card).to_contain_text("a red fox in the snow")
    expect(second_card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)

    page.goto("/runs")
    tiles = page.locator("[data-run-tile]")
    expect(tiles).to_have_count(2)
    expect(tiles.nth(0)).to_contain_text("a red fox in the snow")
    expect(tiles.nth(1)).to_contain_text("a red fox")
    tiles.nth(0).locator(".tile-link").click()
    page.wait_for_url(re.compile(r"/runs/run_\w+$"))
    assert page.url.rsplit("/", 1)[1] != first_id
    row = page.locator('#what-changed [data-diff-field="prompt"]')
    expect(row).to_have_attribute("data-change", "changed")
    expect(row.locator(".value-old")).to_have_text("a red fox")
    expect(row.locator(".value-new")).to_have_text("a red fox in the snow")
    expect(page.locator(f'[data-parent] a[href="/runs/{first_id}"]')).to_be_visible()


def test_gallery_search_load_more_and_compare(app, page: Page, problems, member, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    owl = api_run(app, member, "an owl at night", model="local/sketch", aspect_ratio="1:1", seed=5)
    cat = api_run(app, member, "a cat at night", model="local/sketch", aspect_ratio="16:9", seed=5)
    api_run(app, member, "a sunny beach")
    for run_id in (owl, cat):
        wait_for_run(app, run_id)
    sign_in(page, member.email)
    page.goto("/runs")
    tiles = page.locator("[data-run-tile]")
    expect(tiles).to_have_count(2)
    page.locator("[data-load-more] a").click()
    expect(tiles).to_have_count(3)
    expect(page.locator("[data-load-more]")).to_have_count(0)

    page.get_by_label("Search prompts").fill("NIGHT")
    expect(page).to_have_url(re.compile(r"q=NIGHT"))
    expect(tiles).to_have_count(2)
    expect(tiles.nth(0)).to_contain_text("a cat at night")

    compare = page.locator("[data-compare-submit]")
    expect(compare).to_be_disabled()
    page.get_by_label(f"Select run {owl} to compare").check()
    expect(compare).to_be_disabled()
    page.get_by_label(f"Select run {cat} to compare").check()
    expect(compare).to_be_enabled()
    compare.click()
    page.wait_for_url(re.compile(r"/runs/compare\?"))
    expect(page.locator("[data-compare-run]")).to_have_count(2)
    expect(page.locator(".compare-col img")).to_have_count(2)
    differing = page.locator("tr[data-differs]")
    expect(differing).to_have_count(2)
    expect(page.locator('tr[data-differs][data-field="aspect_ratio"]')).to_contain_text("16:9")
    expect(page.locator('tr[data-field="model"]')).not_to_have_attribute("data-differs", "")
    page.screenshot(path="/tmp/runs-compare.png", full_page=True)


def test_back_from_a_run_keeps_loaded_pages_and_the_scroll_position(app, page: Page, problems,
                                                                     member, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 4)
    made = [api_run(app, member, f"numbered run {n}") for n in range(10)]
    for run_id in made:
        wait_for_run(app, run_id)
    page.set_viewport_size({"width": 1366, "height": 850})
    sign_in(page, member.email)
    page.goto("/runs")
    tiles = page.locator("[data-run-tile]")
    expect(tiles).to_have_count(4)
    page.get_by_role("link", name="Load more").click()
    expect(tiles).to_have_count(8)
    expect(page).to_have_url(re.compile(r"/runs\?pages=2$"))
    target = tiles.nth(6)
    target.evaluate("el => el.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(200)
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 150
    target_id = target.get_attribute("data-run-tile")
    target.locator(".tile-link").click()
    page.wait_for_url(re.compile(rf"/runs/{target_id}$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"/runs\?pages=2$"))
    expect(tiles).to_have_count(8)  # both pages, not just the first
    page.wait_for_function("y => Math.abs(window.scrollY - y) < 40", arg=scrolled)
    assert in_view(page, page.locator(f'[data-run-tile="{target_id}"]'))
    # The rest still loads from there, and Back after that comes back as long.
    page.get_by_role("link", name="Load more").click()
    expect(tiles).to_have_count(10)
    expect(page).to_have_url(re.compile(r"/runs\?pages=3$"))
    page.reload()
    expect(tiles).to_have_count(10)


def in_view(page: Page, locator) -> bool:
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] < page.viewport_size["height"]


@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 850}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_failed_tiles_show_the_whole_time(app, page: Page, problems, member, viewport):
    """A failed tile says "refunded $x" where others show a price: longer, so its meta
    line wraps rather than cutting off "just now"."""
    failed = api_run(app, member, "this one fails on purpose", outcome="fail")
    ok = api_run(app, member, "this one works")
    for run_id in (failed, ok):
        wait_for_run(app, run_id)
    page.set_viewport_size(viewport)
    sign_in(page, member.email)
    page.goto("/runs")
    for run_id in (failed, ok):
        tile = page.locator(f'[data-run-tile="{run_id}"]')
        when = tile.locator(".tile-meta time")
        expect(when).to_have_text("just now")
        box, frame = when.bounding_box(), tile.bounding_box()
        assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"], (box, frame)
        assert box["y"] + box["height"] <= frame["y"] + frame["height"], (box, frame)
        # Nothing inside is cut: the text is as wide as it needs to be.
        assert when.evaluate("t => t.scrollWidth <= t.clientWidth + 1 && t.getClientRects().length === 1")
