"""Grids in a real browser (Chromium via Playwright), CSRF on, strict CSP: the price
before running, six runs made at once filling in live on the grid's page (a failing cell
refunded), "Use these settings", the share link logged out and after revoke, a grid
beyond the balance, several models as a model axis, the phone layout and axe."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from runbase_web.extensions import db
from runbase_web.models import Batch, EntryKind, Run, User
from runbase_web.services import ledger
from tests.support.pages import RUN_TIMEOUT_MS, pick, sign_up
from tests.web.test_accessibility_browser import violations

pytestmark = pytest.mark.browser

#: Cards fade in whenever they are drawn (and polling redraws them): axe measures colours
#: once that is over.
FINISH_ANIMATIONS = "document.getAnimations().forEach(animation => animation.finish())"


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def fill_seed_by_outcome_grid(page: Page) -> None:
    """local/test: seeds 1, 2, 3 across, outcome succeed / fail down (2×3)."""
    pick(page, "local/test")
    page.get_by_label("Grid", exact=True).check()
    page.locator("#grid-x").select_option("seed")
    page.locator("#grid-x-values").fill("1, 2, 3")
    page.locator("#grid-y").select_option("f:outcome")
    page.locator('[data-grid-axis="y"] [data-grid-pick][value="succeed"]').check()
    page.locator('[data-grid-axis="y"] [data-grid-pick][value="fail"]').check()
    page.locator("#f-prompt").fill("a grid of tests")


def cells(page: Page):
    return page.locator("[data-grid-table] [data-run-card]")


def user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.query(User).filter_by(email=email).one().id


def test_a_grid_shows_its_price_runs_six_at_once_and_fills_in(app, page: Page, problems, chromium):
    noise: list[str] = []
    page.on("console", lambda msg: noise.append(f"{page.url} {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    email = sign_up(page)
    fill_seed_by_outcome_grid(page)
    # The price comes first: six runs and their exact total, the single price hidden.
    expect(page.locator("[data-grid-runs]")).to_have_text("6 runs, total")
    expect(page.locator("[data-grid-total]")).to_have_text("$0.0006")
    expect(page.locator("#price")).to_be_hidden()
    page.locator("#f-prompt").press("Control+Enter")
    page.wait_for_url(re.compile(r"/grids/grid_[a-z0-9]+$"))
    with app.app_context():
        assert db.session.query(Run).count() == 6 and db.session.query(Batch).count() == 1
    expect(cells(page)).to_have_count(6)
    expect(page.locator(".grid-col-head .grid-head-value")).to_have_text(["1", "2", "3"])
    expect(page.locator(".grid-row-head .grid-head-value")).to_have_text(["succeed", "fail"])
    for index in range(3):
        expect(cells(page).nth(index)).to_have_attribute("data-status", "succeeded",
                                                         timeout=RUN_TIMEOUT_MS)
    for index in range(3, 6):
        expect(cells(page).nth(index)).to_have_attribute("data-status", "failed",
                                                         timeout=RUN_TIMEOUT_MS)
    expect(page.locator("[data-grid-progress]")).to_have_text("6 of 6 finished")
    # Three cells refunded. Read after a reload: each finished card brings the balance
    # as it was when that card was drawn, and their answers may arrive out of order.
    page.reload()
    expect(page.locator("#nav-balance")).to_have_text("$0.9997")
    expect(page.locator("[data-grid-progress]")).to_have_text("6 of 6 finished")
    page.evaluate(FINISH_ANIMATIONS)
    assert violations(page) == []
    page.emulate_media(color_scheme="dark")
    page.reload()
    page.wait_for_load_state("networkidle")
    page.evaluate(FINISH_ANIMATIONS)
    assert violations(page) == []
    page.emulate_media(color_scheme="light")
    page.reload()

    # "Use these settings" restores that cell's form in the Playground.
    page.locator("[data-grid-cell]").nth(1).get_by_role("link", name="Use these settings").first.click()
    page.wait_for_url(re.compile(r"/playground\?from=run_"))
    expect(page.locator("#f-seed")).to_have_value("2")
    expect(page.locator("#f-outcome")).to_have_value("succeed")
    expect(page.locator("#f-prompt")).to_have_value("a grid of tests")
    page.go_back()
    # A card's "Edit & rerun" opens the Playground too (a grid's page has no form to swap).
    cells(page).nth(4).locator("[data-edit-rerun]").click()
    page.wait_for_url(re.compile(r"/playground\?from=run_"))
    expect(page.locator("#f-seed")).to_have_value("2")
    expect(page.locator("#f-outcome")).to_have_value("fail")
    page.go_back()

    # One link for the whole grid, prompts hidden, open to anyone until revoked.
    panel = page.locator("[data-share-panel]")
    panel.get_by_label("Hide the prompts").check()
    panel.get_by_role("button", name="Create share link").click()
    link_box = panel.locator("[data-share-link]")
    expect(link_box).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/g/[\w-]{32}$"))
    link = link_box.input_value()
    stranger = chromium.new_context()  # no cookies: not signed in
    try:
        visit = stranger.new_page()
        response = visit.goto(link)
        assert response.status == 200 and response.headers["referrer-policy"] == "no-referrer"
        expect(visit.locator("[data-shared-cell]")).to_have_count(6)
        images = visit.locator("[data-shared-cell] img")
        expect(images).to_have_count(3)
        visit.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                arg=images.first.element_handle())
        expect(visit.locator("[data-shared-prompt]")).to_have_count(0)
        content = visit.content()
        assert email not in content and "a grid of tests" not in content
        assert violations(visit) == []
        panel.get_by_role("button", name="Revoke link").click()
        expect(panel.get_by_role("button", name="Create share link")).to_be_visible()
        assert visit.goto(link).status == 404
    finally:
        stranger.close()

    page.goto("/runs")  # the gallery lists the grid as a tile
    expect(page.locator("[data-grid-tile]")).to_have_count(1)
    assert violations(page) == []
    assert noise == []


def test_a_grid_beyond_the_balance_says_so_and_creates_nothing(app, page: Page, problems):
    email = sign_up(page)
    owner = user_id(app, email)
    with app.app_context():
        ledger.credit(db.session, owner, -999_450, kind=EntryKind.ADJUST)
        db.session.commit()
    page.goto("/playground")
    fill_seed_by_outcome_grid(page)
    expect(page.locator("[data-grid-total]")).to_have_text("$0.0006")
    expect(page.locator("#grid-price [data-shortfall]")).to_contain_text("Not enough credit")
    page.locator("#run-form button[type=submit]").click()
    expect(page.locator("#grid-error")).to_have_text(
        "Your balance is too low for these 6 runs, which cost $0.0006 together. Nothing was run.")
    expect(page.get_by_label("Grid", exact=True)).to_be_checked()
    with app.app_context():
        assert db.session.query(Run).count() == 0 and db.session.query(Batch).count() == 0
        assert db.session.query(User).filter_by(email=email).one().balance_micros == 550


def test_several_models_are_a_grid_whose_axis_is_the_model(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    page.get_by_label("Grid", exact=True).check()
    page.locator("#grid-x").select_option("model")
    page.locator('[data-grid-pick][value="local/sketch"]').check()
    page.locator('[data-grid-pick][value="local/test"]').check()
    expect(page.locator("[data-grid-total]")).to_have_text("$0.0011")
    page.locator("#f-num_images").fill("2")
    page.locator("#f-num_images").blur()
    expect(page.locator("[data-grid-total]")).to_have_text("$0.0021")
    page.locator("#f-prompt").fill("same prompt, two models")
    page.locator("#f-prompt").press("Control+Enter")
    page.wait_for_url(re.compile(r"/grids/grid_"))
    expect(cells(page)).to_have_count(2)
    expect(page.locator("[data-grid-table] .run-model")).to_have_text(["local/sketch", "local/test"])
    expect(page.locator("#nav-balance")).to_have_text("$0.9979")


def test_on_a_phone_the_grid_scrolls_inside_itself_only(app, chromium, live_server):
    context = chromium.new_context(base_url=live_server, viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        sign_up(page)
        fill_seed_by_outcome_grid(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("#run-form button[type=submit]").click()
        page.wait_for_url(re.compile(r"/grids/grid_"))
        expect(cells(page)).to_have_count(6)
        for index in range(6):
            expect(cells(page).nth(index)).not_to_have_attribute(
                "data-status", re.compile("pending|processing"), timeout=RUN_TIMEOUT_MS)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        scroller = page.locator("[data-grid-scroll]")
        assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")
    finally:
        context.close()
