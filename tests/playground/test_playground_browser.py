"""Playground iteration in a real browser (Chromium via Playwright), CSRF on, strict CSP:
Ctrl+Enter, the seed control, Edit & rerun, compare, and restoring the
form from a PNG that carries its recipe (file input and drag and drop)."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from runbase_web import recipe
from runbase_web.extensions import db
from runbase_web.models import Run
from tests.support.pages import RUN_TIMEOUT_MS, pick, sign_up

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def cards(page: Page):
    return page.locator("#cards [data-run-card]")


def wait_done(card) -> None:
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)


def stored(app, run_id: str) -> Run:
    with app.app_context():
        return db.session.get(Run, run_id)


def test_ctrl_enter_and_keep_seed_reusing_the_last_seed(app, page: Page, problems):
    """Ctrl+Enter submits from any field; "keep" reuses the last seed, cards offer theirs."""
    sign_up(page)
    pick(page, "local/test")
    seed = page.locator("#f-seed")
    page.locator("#f-prompt").fill("seeded")
    page.get_by_label("Keep seed").check()
    page.locator("#f-prompt").press("Control+Enter")
    first = cards(page).first
    expect(first).to_have_attribute("data-seed", re.compile(r"^\d+$"))
    drawn = first.get_attribute("data-seed")
    expect(seed).to_have_value(drawn)  # "keep" shows the seed it will reuse
    page.locator("#f-delay_ms").press("Control+Enter")  # from a field other than the prompt
    expect(cards(page)).to_have_count(2)
    expect(cards(page).first).to_have_attribute("data-seed", drawn)

    page.get_by_label("New seed each run").check()
    expect(seed).to_have_value("")
    page.locator("#run-form button[type=submit]").click()
    expect(cards(page)).to_have_count(3)
    expect(cards(page).first).not_to_have_attribute("data-seed", drawn)

    # "Use this seed" on an older card brings it back in "keep" mode.
    cards(page).nth(2).get_by_role("button", name="Use this seed").click()
    expect(seed).to_have_value(drawn)
    expect(page.get_by_label("Keep seed")).to_be_checked()
    # Typing a seed switches to "keep" too.
    page.get_by_label("New seed each run").check()
    seed.fill("777")
    expect(page.get_by_label("Keep seed")).to_be_checked()


def test_edit_and_rerun_keeps_the_cards_and_records_the_parent(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    page.locator("#f-aspect_ratio").select_option("16:9")
    page.locator("#f-prompt").fill("first idea")
    page.locator("#f-prompt").press("Control+Enter")
    first = cards(page).first
    wait_done(first)
    first_id = first.get_attribute("data-run-id")
    pick(page, "local/test")  # wander off to another model
    page.locator("#f-prompt").fill("unrelated")
    page.locator("#f-prompt").press("Control+Enter")
    expect(cards(page)).to_have_count(2)

    cards(page).nth(1).get_by_role("link", name="Edit & rerun").click()
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/sketch")
    expect(page.locator("#f-prompt")).to_have_value("first idea")
    expect(page.locator("#f-aspect_ratio")).to_have_value("16:9")
    expect(page.locator('#run-form input[name="parent_id"]')).to_have_value(first_id)
    expect(page.locator('[data-model-option][aria-current="true"]')).to_have_attribute(
        "href", re.compile(r"model=local/sketch$"))
    expect(cards(page)).to_have_count(2)  # the session's cards stay

    page.locator("#f-prompt").fill("first idea, refined")
    page.locator("#f-prompt").press("Control+Enter")
    expect(cards(page)).to_have_count(3)
    child = cards(page).first
    expect(child).to_contain_text("first idea, refined")
    assert stored(app, child.get_attribute("data-run-id")).parent_id == first_id


def test_compare_button_appears_for_two_to_four_runs(page: Page, problems):
    sign_up(page)
    pick(page, "local/test")
    for count, prompt in enumerate(("one", "two", "three"), start=1):
        page.locator("#f-prompt").fill(prompt)
        page.locator("#f-prompt").press("Control+Enter")
        expect(cards(page)).to_have_count(count)
    compare = page.locator("[data-compare-go]")
    expect(compare).to_be_hidden()
    cards(page).nth(0).get_by_label("Compare").check()
    expect(compare).to_be_hidden()
    cards(page).nth(2).get_by_label("Compare").check()
    expect(compare).to_be_visible()
    ids = [cards(page).nth(i).get_attribute("data-run-id") for i in (0, 2)]
    for index in range(3):
        wait_done(cards(page).nth(index))  # polling replaced the cards: boxes stay ticked
    expect(cards(page).nth(0).get_by_label("Compare")).to_be_checked()
    compare.click()
    page.wait_for_url(re.compile(r"/runs/compare\?ids="))
    assert page.url.endswith("/runs/compare?ids=" + ",".join(ids))


def recipe_png(model: str, run_input: dict) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(out, format="PNG")
    return recipe.embed_png_recipe(out.getvalue(), {
        "model": model, "input": run_input, "run": "https://elsewhere.example/runs/run_x",
        "runId": "run_x"})


def test_choosing_a_recipe_png_restores_the_form(page: Page, problems):
    page.goto("/playground?model=local/test")
    data = recipe_png("local/sketch", {"prompt": "restored from a file ✨", "aspect_ratio": "9:16",
                                       "num_images": 3, "seed": 1234})
    page.locator("[data-recipe-file]").set_input_files(
        files=[{"name": "made-here.png", "mimeType": "image/png", "buffer": data}])
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/sketch")
    expect(page.locator("#f-prompt")).to_have_value("restored from a file ✨")
    expect(page.locator("#f-aspect_ratio")).to_have_value("9:16")
    expect(page.locator("#f-num_images")).to_have_value("3")
    expect(page.locator("#f-seed")).to_have_value("1234")
    expect(page.get_by_label("Keep seed")).to_be_checked()
    expect(page.locator("#price")).to_contain_text("$0.003")  # the restored form is live
    expect(page.locator('#run-form input[name="parent_id"]')).to_have_count(0)  # not our run


def test_dropping_a_recipe_png_restores_the_form_and_other_files_say_why_not(page: Page, problems):
    page.goto("/playground?model=local/sketch")
    data = recipe_png("local/test", {"prompt": "dropped", "outcome": "fail"})
    drop(page, data)
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/test")
    expect(page.locator("#f-prompt")).to_have_value("dropped")
    expect(page.locator("#f-outcome")).to_have_value("fail")

    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="PNG")
    drop(page, out.getvalue())
    expect(page.locator("#notices")).to_contain_text("carries no Runbase recipe")
    drop(page, recipe_png("acme/unknown", {"prompt": "x"}))
    expect(page.locator("#notices")).to_contain_text("which this server doesn't offer")
    expect(page.locator('#run-form input[name="model"]')).to_have_value("local/test")


def drop(page: Page, data: bytes) -> None:
    """Dispatch a real drop event carrying `data` as a PNG file onto the form column."""
    page.evaluate("""([bytes]) => {
        const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
        const transfer = new DataTransfer();
        transfer.items.add(file);
        const zone = document.querySelector("#run-form");
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
        }
    }""", [list(data)])
