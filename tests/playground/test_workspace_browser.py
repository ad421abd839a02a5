"""The Playground as a workspace, in a real browser (Chromium via Playwright), CSRF on,
strict CSP: the runs column survives reloads, Back and model switches; results and
errors land in view; the running card cancels and says how long runs usually take; the
balance is compared with the price before Run; one live region announces each ending."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run, User
from runbase_web.services import billing, run_creation
from tests.conftest import wait_for_run
from tests.support.pages import RUN_TIMEOUT_MS, STILL_RUNNING_MS, pick, sign_up

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 850}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def cards(page: Page):
    return page.locator("#cards [data-run-card]")


def user_of(app, email: str) -> User:
    with app.app_context():
        return db.session.query(User).filter_by(email=email).one()


def api_run(app, user_id: int, prompt: str, **extra) -> str:
    """A run of local/test made the way the API makes one; the embedded worker runs it."""
    with app.app_context():
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user_id, api_key_id=None, model_id="local/test",
                                      raw_input={"prompt": prompt, **extra})
        db.session.commit()
        run_id = run.id
    state.wake_worker(app)
    return run_id


def in_viewport(page: Page, locator) -> bool:
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] < page.viewport_size["height"]


def test_reload_back_and_model_switches_keep_the_runs_column(app, page: Page, problems):
    email = sign_up(page)
    user_id = user_of(app, email).id
    for index in range(11):
        wait_for_run(app, api_run(app, user_id, f"earlier run {index}"))
    pick(page, "local/test")
    page.locator("#f-prompt").fill("still running")
    page.locator("#f-delay_ms").fill(str(STILL_RUNNING_MS))
    page.locator("#run-form button[type=submit]").click()
    expect(cards(page).first).to_contain_text("still running")

    page.reload()  # the active run is back, newest first, and keeps polling
    first = cards(page).first
    expect(first).to_contain_text("still running")
    expect(first).to_have_attribute("data-status", re.compile("pending|processing"))
    expect(cards(page)).to_have_count(10)
    expect(first).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)

    page.get_by_role("link", name="Older runs").click()  # the next page joins the end
    expect(cards(page)).to_have_count(12)
    expect(cards(page).last).to_contain_text("earlier run 0")
    expect(page.get_by_role("link", name="Older runs")).to_have_count(0)

    pick(page, "local/sketch")  # switching models swaps the form only
    expect(cards(page)).to_have_count(12)

    cards(page).first.get_by_role("link", name="Open").click()
    page.wait_for_url(re.compile(r"/runs/run_"))
    page.go_back()
    expect(cards(page).first).to_contain_text("still running")
    expect(cards(page)).to_have_count(10)


def test_signed_out_visitors_see_no_cards_and_signing_in_shows_theirs(app, page: Page, problems):
    email = sign_up(page)
    wait_for_run(app, api_run(app, user_of(app, email).id, "mine"))
    page.context.clear_cookies()
    page.goto("/playground")
    expect(cards(page)).to_have_count(0)
    expect(page.locator(".cards-empty")).to_be_visible()
    page.goto("/auth/login?next=/playground")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("password123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/playground"))
    expect(cards(page)).to_have_count(1)
    expect(cards(page).first).to_contain_text("mine")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_run_is_in_reach_and_the_new_card_lands_in_view(app, page: Page, problems, viewport):
    page.set_viewport_size(viewport)
    email = sign_up(page)
    user_id = user_of(app, email).id
    for index in range(3):
        wait_for_run(app, api_run(app, user_id, f"older {index}"))
    page.goto("/playground?model=local/sketch")
    run_button = page.locator("#run-form button[type=submit]")
    page.locator("#f-prompt").fill("a new idea")
    assert in_viewport(page, run_button), "Run must be reachable without scrolling"
    run_button.click()
    expect(cards(page)).to_have_count(4)
    new = cards(page).first
    expect(new).to_contain_text("a new idea")
    page.wait_for_timeout(100)  # the scroll follows the swap
    assert in_viewport(page, new), new.bounding_box()
    # The header no longer covers it either.
    header = page.locator(".topbar").bounding_box()
    assert new.bounding_box()["y"] >= header["y"] + header["height"] - 1


def test_low_balance_is_said_before_run_and_the_error_is_focused(app, page: Page, problems):
    email = sign_up(page)
    user_id = user_of(app, email).id
    with app.app_context():  # through the ledger, so its invariants hold
        billing.operator_credit(db.session, user_id, -999_500, adjust=True,
                                note="test: leave $0.0005")
        db.session.commit()
    page.set_viewport_size(DESKTOP)
    page.goto("/playground?model=local/sketch")
    shortfall = page.locator("#price [data-shortfall]")
    expect(shortfall).to_contain_text("Not enough credit")
    # Top-ups are not configured on this server: no link, no shell command.
    expect(shortfall).to_contain_text("Ask the administrator of this server")
    expect(shortfall.get_by_role("link")).to_have_count(0)
    page.goto("/playground?model=local/test")  # $0.0001 fits in $0.0005
    expect(page.locator("#price [data-shortfall]")).to_have_count(0)
    page.locator("#f-prompt").fill("x")
    page.locator("#f-prompt").press("Control+Enter")
    expect(cards(page)).to_have_count(1)

    pick(page, "local/sketch")
    expect(page.locator("#price [data-shortfall]")).to_be_visible()
    page.locator("#f-prompt").fill("too expensive")
    page.locator("#run-form button[type=submit]").click()
    error = page.locator("#run-form [data-form-error]")
    expect(error).to_be_focused()
    assert in_viewport(page, error)
    expect(error).to_contain_text(re.compile("balance", re.I))


def test_cancel_from_the_card_refunds_and_says_canceled(app, page: Page, problems):
    email = sign_up(page)
    user_id = user_of(app, email).id
    wait_for_run(app, api_run(app, user_id, "quick", delay_ms=1200))  # history for "usually"
    page.goto("/playground?model=local/test")
    page.locator("#f-prompt").fill("never mind")
    page.locator("#f-delay_ms").fill("60000")
    page.locator("#run-form button[type=submit]").click()
    card = cards(page).first
    expect(card).to_contain_text("never mind")
    expect(card).to_contain_text(re.compile(r"usually ~\d+ s"))
    expect(page.locator("#nav-balance")).to_have_text("$0.9998")
    card.get_by_role("button", name="Cancel").click()
    card = cards(page).first
    expect(card.locator(".badge")).to_have_text("canceled")
    expect(card).to_contain_text("refunded $0.0001")
    expect(card.locator(".cost")).to_have_count(0)  # never shown as if charged
    expect(page.locator("#nav-balance")).to_have_text("$0.9999")
    run_id = card.get_attribute("data-run-id")
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert (run.status, run.error_code) == ("failed", "canceled")
    page.reload()
    expect(cards(page).first.locator(".badge")).to_have_text("canceled")
    page.goto(f"/runs/{run_id}")
    expect(page.locator(".badge").first).to_have_text("canceled")
    page.goto("/runs")
    expect(page.locator(".badge-canceled").first).to_be_visible()


def test_one_live_region_announces_each_outcome_once(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/test")
    page.evaluate("""() => {
        window.heard = [];
        const region = document.querySelector("[data-announcer]");
        new MutationObserver(() => { if (region.textContent) window.heard.push(region.textContent); })
            .observe(region, {childList: true, characterData: true, subtree: true});
    }""")
    page.locator("#f-prompt").fill("works")
    page.locator("#f-delay_ms").fill("1500")
    page.locator("#run-form button[type=submit]").click()
    expect(cards(page)).to_have_count(1)
    page.locator("#f-prompt").fill("breaks")
    page.locator("#f-outcome").select_option("fail")
    page.locator("#f-delay_ms").fill("0")
    page.locator("#run-form button[type=submit]").click()
    expect(cards(page)).to_have_count(2)
    for index in range(2):
        expect(cards(page).nth(index)).to_have_attribute(
            "data-status", re.compile("succeeded|failed"), timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # finished cards poll no more; nothing else is said
    heard = page.evaluate("window.heard")
    assert sorted(heard) == sorted(["Run of local/test succeeded.",
                                    next(h for h in heard if "failed:" in h)]), heard
    assert len(heard) == 2
    # The region itself was never replaced.
    assert page.locator("[data-announcer]").count() == 1


def test_picker_is_one_tab_stop_with_arrow_keys_and_focuses_the_prompt(page: Page, problems):
    page.goto("/playground?model=local/sketch")
    more = page.locator("details[data-picker-more]")
    expect(more).not_to_have_attribute("open", "")
    expect(page.locator('[data-model-option][href$="model=openai/gpt-image-1"]')).to_be_hidden()
    page.get_by_placeholder("Search provider/model…").focus()
    page.keyboard.press("Tab")  # into the list of models this server can run: one stop
    current = page.locator('[data-model-option][href$="model=local/sketch"]')
    expect(current).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator('[data-model-option][href$="model=local/test"]')).to_be_focused()
    page.keyboard.press("Tab")  # out of the list, to the collapsed rest
    expect(page.locator("details[data-picker-more] > summary")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.locator('[data-model-option][href$="model=local/test"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/test")
    expect(page.locator("#f-prompt")).to_be_focused()
    expect(page.locator('[data-model-option][href$="model=local/test"]')).to_have_attribute(
        "aria-selected", "true")
    # Searching for a model that isn't enabled opens the rest, saying what it needs.
    page.get_by_placeholder("Search provider/model…").fill("gpt-image-1.5")
    expect(more).to_have_attribute("open", "")
    expect(page.locator('[data-model-option][href$="model=openai/gpt-image-1.5"]')).to_contain_text(
        "needs OPENAI_API_KEY")


def test_use_as_reference_is_offered_only_where_a_model_takes_it(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    page.locator("#f-prompt").fill("an image")
    page.locator("#run-form button[type=submit]").click()
    expect(cards(page).first).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    # On a fresh server local/sketch itself is the available model that takes a reference.
    cards(page).first.get_by_role("link", name="Use as reference").click()
    expect(page.locator("#run-form input[name=model]")).to_have_value("local/sketch")
    # A video's card offers none: no available model takes a video as a reference image.
    pick(page, "local/sketch-video")
    page.locator("#f-prompt").fill("a short clip")
    page.locator("#run-form button[type=submit]").click()
    expect(cards(page).first).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(cards(page).first.get_by_role("link", name="Use as reference")).to_have_count(0)


def test_outputs_download_and_gallery_tiles_count_images(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    page.locator("#f-num_images").fill("2")
    page.locator("#f-prompt").fill("two of them")
    page.locator("#run-form button[type=submit]").click()
    card = cards(page).first
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    download = card.get_by_role("link", name="Download output 1")
    expect(download).to_have_attribute("download", re.compile(r"^two-of-them-run_\w+-1\.png$"))
    with page.expect_download() as started:
        download.click()
    assert re.match(r"^two-of-them-run_\w+-1\.png$", started.value.suggested_filename)
    expect(card.locator("img").first).to_have_attribute("alt", re.compile("two of them"))
    # Full size in a lightbox; the arrow keys step through the run's outputs, Escape closes.
    hrefs = [card.locator("a[data-lightbox]").nth(i).get_attribute("href") for i in range(2)]
    card.locator("a[data-lightbox]").first.click()
    box = page.locator("dialog.lightbox")
    expect(box).to_be_visible()
    expect(box.locator("img")).to_have_attribute("src", hrefs[0])
    expect(box.locator(".lightbox-count")).to_have_text("1 of 2")
    page.keyboard.press("ArrowRight")
    expect(box.locator("img")).to_have_attribute("src", hrefs[1])
    page.keyboard.press("ArrowRight")  # wraps around
    expect(box.locator("img")).to_have_attribute("src", hrefs[0])
    page.keyboard.press("ArrowLeft")
    expect(box.locator(".lightbox-count")).to_have_text("2 of 2")
    page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    page.goto("/runs")
    expect(page.locator(".thumb-count").first).to_have_text("2 images")


def test_a_field_focused_right_after_a_model_switch_keeps_focus_and_its_value(page: Page, problems):
    """Picking a model moves focus to the new form's prompt; someone (or a test) who is
    already typing in another field of the new form must not have focus, and their
    keystrokes, taken away from it when the swap settles a moment later. (The cause of a
    flaky price: the digit went into the prompt, so the price never changed.)"""
    page.goto("/playground?model=local/test")
    page.evaluate("""() => document.addEventListener("htmx:afterSwap", () => {
        const field = document.querySelector("#f-num_images");
        if (field && !window.grabbed) { window.grabbed = true; field.focus(); }
    })""")
    page.locator('[data-model-option][href$="model=local/sketch"]').click()
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/sketch")
    expect(page.locator("#f-num_images")).to_be_focused()
    page.wait_for_timeout(300)  # past the swap's settle, when the form is processed
    expect(page.locator("#f-num_images")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    page.keyboard.press("Tab")
    expect(page.locator("#f-num_images")).to_have_value("3")
    expect(page.locator("#f-prompt")).to_have_value("")
    expect(page.locator("#price")).to_contain_text("$0.003")
