"""The output component in Chromium, on the pages that show outputs: the lightbox (focus
moves in, ←/→ step through the run's outputs, Escape closes and gives focus back), the
video's poster and Loop toggle, downloads, and the gallery's badges."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import User
from runbase_web.services import run_creation, runs, sharing
from tests.conftest import wait_for_run
from tests.support.pages import sign_up
from tests.web.test_accessibility_browser import violations

pytestmark = pytest.mark.browser


def make_run(app, email: str, model: str, **input_) -> str:
    """A finished run of `model` for the account `email`, made as the API makes one."""
    with app.app_context():
        user_id = db.session.query(User).filter_by(email=email).one().id
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user_id, api_key_id=None, model_id=model,
                                      raw_input=input_)
        db.session.commit()
        run_id = run.id
    state.wake_worker(app)
    assert wait_for_run(app, run_id, timeout=60).status == "succeeded"
    return run_id


def test_lightbox_steps_through_outputs_and_gives_focus_back(app, page: Page, problems):
    email = sign_up(page)
    run_id = make_run(app, email, "local/sketch", prompt="Three kites", num_images=3)
    page.goto(f"/runs/{run_id}")
    links = page.locator("#run-live a[data-lightbox]")
    expect(links).to_have_count(3)
    hrefs = [links.nth(i).get_attribute("href") for i in range(3)]
    links.nth(1).focus()
    page.keyboard.press("Enter")
    box = page.locator("dialog.lightbox")
    expect(box).to_be_visible()
    expect(box.locator(".lightbox-close")).to_be_focused()  # focus moved into the dialog
    expect(box.locator("img")).to_have_attribute("src", hrefs[1])
    expect(box.locator(".lightbox-count")).to_have_text("2 of 3")
    page.keyboard.press("ArrowRight")
    expect(box.locator("img")).to_have_attribute("src", hrefs[2])
    page.keyboard.press("ArrowRight")  # wraps around
    expect(box.locator("img")).to_have_attribute("src", hrefs[0])
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(box.locator(".lightbox-count")).to_have_text("2 of 3")
    box.get_by_role("button", name="Next output").click()
    expect(box.locator(".lightbox-count")).to_have_text("3 of 3")
    expect(box.locator("img")).to_have_attribute("alt", re.compile("Image 3 of 3 made with local/sketch: Three kites"))
    # The output shown can be saved from the lightbox too.
    save = box.get_by_role("link", name="Download this output")
    expect(save).to_have_attribute("href", f"/runs/{run_id}/outputs/2/download")
    with page.expect_download() as started:
        save.click()
    assert started.value.suggested_filename == f"three-kites-{run_id}-3.png"
    expect(box).to_be_visible()  # saving doesn't close it
    page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    expect(links.nth(1)).to_be_focused()  # back where the person was


def test_video_has_a_poster_a_loop_toggle_and_plays_full_size(app, page: Page, problems):
    email = sign_up(page)
    run_id = make_run(app, email, "local/sketch-video", prompt="Rolling waves", duration=1)
    page.goto(f"/runs/{run_id}")
    video = page.locator("#run-live video[data-output-video]")
    poster = video.get_attribute("poster")
    assert poster and poster.endswith("/poster")
    # The poster is served: a real JPEG the browser decodes.
    size = page.evaluate("""async (src) => {
        const img = new Image(); img.src = src; await img.decode();
        return [img.naturalWidth, img.naturalHeight];
    }""", poster)
    assert size[0] > 0 and size[1] > 0
    loop = page.get_by_role("button", name="Loop video 1")
    expect(loop).to_have_attribute("aria-pressed", "false")
    assert video.evaluate("v => v.loop") is False
    loop.click()
    expect(loop).to_have_attribute("aria-pressed", "true")
    assert video.evaluate("v => v.loop") is True
    # Full size keeps the loop setting; Escape closes and focus returns.
    full = page.get_by_role("link", name="Full size video 1")
    full.click()
    shown = page.locator("dialog.lightbox video")
    expect(shown).to_be_visible()
    expect(shown).to_have_attribute("poster", re.compile(r"/poster$"))
    assert shown.evaluate("v => v.loop") is True
    expect(page.locator("dialog.lightbox img")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page.locator("dialog.lightbox")).to_be_hidden()
    expect(full).to_be_focused()
    loop.click()
    expect(loop).to_have_attribute("aria-pressed", "false")
    assert video.evaluate("v => v.loop") is False


def test_gallery_tiles_badge_videos_and_counts(app, page: Page, problems):
    email = sign_up(page)
    make_run(app, email, "local/sketch", prompt="Pair of pears", num_images=2)
    make_run(app, email, "local/sketch-video", prompt="A moving thing", duration=1)
    page.goto("/runs")
    tiles = page.locator("[data-run-tile]")
    expect(tiles).to_have_count(2)
    video_tile, image_tile = tiles.nth(0), tiles.nth(1)
    expect(video_tile.locator(".thumb-play")).to_be_visible()
    expect(video_tile.locator(".thumb-count")).to_have_count(0)
    still = video_tile.locator("img[data-thumb-poster]")
    expect(still).to_have_attribute("src", re.compile(r"\.mp4/poster$"))
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=still.element_handle())
    expect(image_tile.locator(".thumb-count")).to_have_text("2 images")
    expect(image_tile.locator(".thumb-play")).to_have_count(0)


def test_share_page_offers_the_same_component(app, page: Page, problems):
    email = sign_up(page)
    run_id = make_run(app, email, "local/sketch", prompt="Shared pair", num_images=2)
    with app.app_context():
        user_id = db.session.query(User).filter_by(email=email).one().id
        token = sharing.share_run(db.session, user_id, run_id, hide_prompt=False).share_token
        db.session.commit()
    page.context.clear_cookies()
    page.goto(f"/s/{token}")
    with page.expect_download() as started:
        page.get_by_role("link", name="Download output 2").click()
    assert started.value.suggested_filename == "shared-pair-2.png"
    page.locator("a[data-lightbox]").first.click()
    expect(page.locator("dialog.lightbox .lightbox-count")).to_have_text("1 of 2")
    page.keyboard.press("ArrowRight")
    expect(page.locator("dialog.lightbox img")).to_have_attribute("src", f"/s/{token}/outputs/1")
    page.keyboard.press("Escape")
    expect(page.locator("dialog.lightbox")).to_be_hidden()


def test_compare_zooms_images_together_wipes_a_over_b_and_restores_settings(app, page: Page,
                                                                             problems):
    email = sign_up(page)
    first = make_run(app, email, "local/sketch", prompt="Blue boat", seed=1)
    second = make_run(app, email, "local/sketch", prompt="Red boat", seed=2)
    page.set_viewport_size({"width": 1366, "height": 850})
    page.goto(f"/runs/compare?ids={first},{second}")
    views = page.locator("[data-zoom-view]")
    expect(views).to_have_count(2)
    transform = "el => el.querySelector('img').style.transform"
    level = page.locator("[data-zoom-level]")
    expect(level).to_have_text("100%")
    page.get_by_role("button", name="Zoom in").click()
    expect(level).to_have_text("150%")
    views.first.focus()
    page.keyboard.press("+")
    expect(level).to_have_text("200%")
    page.keyboard.press("ArrowLeft")  # moves the picture right: look further left
    page.keyboard.press("ArrowUp")
    moved = views.first.evaluate(transform)
    assert "scale(2)" in moved and "translate(10%, 10%)" in moved, moved
    assert views.nth(1).evaluate(transform) == moved  # together
    # Dragging the second image moves both.
    box = views.nth(1).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - box["width"] * 0.2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    dragged = views.first.evaluate(transform)
    assert dragged != moved and dragged == views.nth(1).evaluate(transform), dragged
    views.first.focus()
    page.keyboard.press("0")
    expect(level).to_have_text("100%")
    assert "scale(1)" in views.first.evaluate(transform)

    assert violations(page) == []

    # A/B wipe: the slider decides how much of A covers B, from the keyboard too.
    slider = page.get_by_label(re.compile("Show A up to"))
    top = page.locator("[data-wipe-top]")
    assert top.evaluate("el => el.style.clipPath") == "inset(0px 50% 0px 0px)"
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert top.evaluate("el => el.style.clipPath") == "inset(0px 40% 0px 0px)"
    expect(page.locator("[data-wipe-value]")).to_have_text("60%")

    # "Use these settings": the Playground's form as that run was made.
    page.get_by_role("link", name="Use these settings of run 2").click()
    page.wait_for_url(re.compile(r"/playground\?from=" + second))
    expect(page.locator("#f-prompt")).to_have_value("Red boat")
    expect(page.locator("#f-seed")).to_have_value("2")


def test_a_video_without_a_poster_shows_its_own_frame_in_the_gallery(app, page: Page, problems):
    email = sign_up(page)
    with app.app_context():
        user_id = db.session.query(User).filter_by(email=email).one().id
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user_id, api_key_id=None,
                                      model_id="local/sketch-video", raw_input={"prompt": "lost"})
        db.session.commit()
        # Succeeded with a file that is not in storage: no poster can be made of it.
        runs.mark_succeeded(db.session, run.id, ["/files/generated/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.mp4"],
                            public_url="")
        db.session.commit()
    page.goto("/runs")
    tile = page.locator("[data-run-tile]").first
    expect(tile.locator("video")).to_have_attribute("aria-label", re.compile("Video made with local/sketch-video: lost"))
    expect(tile.locator("img[data-thumb-poster]")).to_have_count(0)
    expect(tile.locator(".thumb-play")).to_be_visible()
