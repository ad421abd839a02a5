"""Reference images from your own files, in a real browser (Chromium via Playwright), CSRF
on, strict CSP: upload by file picker, by drop and by paste; thumbnails, remove and reorder
from the keyboard; the model's maximum count and the size limit shown next to the field;
a run of local/sketch with an uploaded reference; and "Use as reference" still working."""
from __future__ import annotations

import io
import os
import re

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from runbase_web.extensions import db
from runbase_web.models import InputFile, Run
from tests.support.pages import RUN_TIMEOUT_MS, pick, sign_up
from tests.web.test_accessibility_browser import violations

pytestmark = pytest.mark.browser
#: Where to keep screenshots of the drop zone's states, when set (for looking at them).
SHOTS = os.environ.get("RUNBASE_SCREENSHOTS")
UPLOAD_URL = re.compile(r"^http://127\.0\.0\.1:\d+/api/v1/files/[A-Za-z0-9_-]{32}\.(png|jpg|webp)$")


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


@pytest.fixture
def noise(page: Page) -> list[str]:
    """Console errors and warnings (a refused upload's 4xx is logged by the browser, so
    only tests of successful paths assert there are none)."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(f"{msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    return seen


def png(colour=(220, 30, 30), size=(64, 48), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def field(page: Page):
    return page.locator('[data-field="image_urls"]')


def urls(page: Page) -> list[str]:
    return [line for line in page.locator("#f-image_urls").input_value().splitlines() if line]


def items(page: Page):
    return field(page).locator("[data-upload-item]")


def choose(page: Page, *files: tuple[str, bytes, str]) -> None:
    """Pick files with the drop zone's file input."""
    field(page).locator("[data-upload-input]").set_input_files(
        [{"name": name, "mimeType": mime, "buffer": data} for name, data, mime in files])


def dispatch_files(page: Page, kind: str, files: list[tuple[str, bytes, str]]) -> None:
    """A real drop (onto the zone) or paste (on the prompt) event carrying `files`."""
    page.evaluate("""([kind, files]) => {
        const transfer = new DataTransfer();
        for (const [name, bytes, type] of files) {
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type}));
        }
        if (kind === "drop") {
            const zone = document.querySelector("[data-upload-drop]");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
            }
        } else {
            document.querySelector("#f-prompt").dispatchEvent(
                new ClipboardEvent("paste", {bubbles: true, cancelable: true, clipboardData: transfer}));
        }
    }""", [kind, [[name, list(data), mime] for name, data, mime in files]])


def accessible(page: Page) -> list[str]:
    """axe's violations, with the page at its top as loaded (not scrolled under the
    translucent top bar, which axe would blend into the colours behind it)."""
    page.evaluate("window.scrollTo(0, 0)")
    return violations(page)


def shot(page: Page, name: str) -> None:
    """Screenshots of the drop zone's states, at desktop and phone sizes (only when
    RUNBASE_SCREENSHOTS names a directory)."""
    if not SHOTS:
        return
    os.makedirs(SHOTS, exist_ok=True)
    shown = field(page).locator("[data-upload-error]:visible")
    for width, height in ((1366, 850), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        # Centred: the sticky action bar covers the bottom of the window.
        (shown if shown.count() else field(page).locator("[data-uploads]")).evaluate(
            "element => element.scrollIntoView({block: 'center'})")
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png")
    page.set_viewport_size({"width": 1366, "height": 850})


def uploads_of(app) -> list[InputFile]:
    with app.app_context():
        return list(db.session.scalars(select(InputFile).order_by(InputFile.id)))


def test_picker_drop_and_paste_upload_and_the_list_reorders(app, page: Page, problems, noise):
    sign_up(page)
    pick(page, "local/sketch")
    expect(field(page).locator("[data-uploads]")).to_be_visible()
    expect(field(page)).to_contain_text("0 of 3")
    shot(page, "empty")

    choose(page, ("red.png", png((220, 30, 30)), "image/png"))
    expect(items(page)).to_have_count(1)
    dispatch_files(page, "drop", [("green.gif", png((30, 200, 30), fmt="GIF"), "image/gif")])
    expect(items(page)).to_have_count(2)
    dispatch_files(page, "paste", [("blue.jpg", png((30, 30, 220), fmt="JPEG"), "image/jpeg")])
    expect(items(page)).to_have_count(3)
    expect(field(page)).to_contain_text("3 of 3")
    first, second, third = urls(page)
    assert all(UPLOAD_URL.match(url) for url in (first, second, third)), urls(page)
    assert second.endswith(".png") and third.endswith(".jpg")  # the GIF became a PNG
    # The dropped file was not taken for a recipe PNG by the column's own drop handler.
    expect(page.locator("[data-restore-notice]")).to_have_count(0)
    # Thumbnails are served to their owner's session.
    expect(items(page).first.locator("img")).to_have_js_property("naturalWidth", 64)
    shot(page, "thumbnails")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert accessible(page) == []
    shot(page, "thumbnails-dark")
    page.emulate_media(color_scheme="light")

    # Reorder and remove from the keyboard: focus stays on the moved image's button.
    later = items(page).first.get_by_role("button", name="Move reference image 1 later")
    later.focus()
    page.keyboard.press("Enter")
    assert urls(page) == [second, first, third]
    expect(items(page).nth(1).get_by_role("button", name="Move reference image 2 later")).to_be_focused()
    page.keyboard.press("Enter")
    assert urls(page) == [second, third, first]
    items(page).first.get_by_role("button", name="Remove reference image 1").press("Enter")
    assert urls(page) == [third, first]
    expect(items(page).first.get_by_role("button", name="Remove reference image 1")).to_be_focused()
    assert len(uploads_of(app)) == 3 and problems == [] and noise == []


def test_too_many_too_large_and_refused_files_are_shown_next_to_the_field(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    error = field(page).locator("[data-upload-error]")
    choose(page, *[(f"{n}.png", png((n * 50, 0, 0)), "image/png") for n in range(1, 5)])
    expect(error).to_contain_text("at most 3 reference images: 1 file was not added")
    expect(items(page)).to_have_count(3)
    shot(page, "too-many")
    items(page).first.get_by_role("button", name="Remove reference image 1").click()
    expect(error).to_be_hidden()

    choose(page, ("notes.png", b"this is no image", "image/png"))
    expect(error).to_contain_text("notes.png: The file is not an image that can be read")
    expect(page.locator("#f-image_urls-upload-error")).to_be_visible()
    expect(items(page)).to_have_count(2)
    shot(page, "error")
    assert accessible(page) == []

    app.config["UPLOAD_MAX_BYTES"] = 2 * 1024 * 1024
    page.reload()
    big = Image.effect_noise((1400, 1400), 90).convert("RGB")
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    choose(page, ("huge.png", buffer.getvalue(), "image/png"))
    expect(error).to_contain_text("huge.png is larger than 2 MB")
    assert len(uploads_of(app)) == 3  # neither the broken nor the huge file was kept


def test_uploading_state_is_shown_while_the_file_travels(app, page: Page, problems):
    sign_up(page)
    pick(page, "local/sketch")
    # Hold the upload's answer back so the in-between state can be seen.
    held = []
    page.route("**/playground/files", lambda route: held.append(route))
    choose(page, ("slow.png", png(), "image/png"))
    expect(field(page).locator("[data-upload-pending]")).to_contain_text("Uploading slow.png")
    shot(page, "uploading")
    held[0].continue_()
    expect(items(page)).to_have_count(1)
    expect(field(page).locator("[data-upload-pending]")).to_have_count(0)


def test_a_sketch_run_uses_the_uploaded_reference(app, page: Page, problems, noise):
    sign_up(page)
    pick(page, "local/sketch")
    choose(page, ("red.png", png((230, 20, 20), size=(80, 80)), "image/png"))
    expect(items(page)).to_have_count(1)
    page.locator("#f-prompt").fill("from my own photo")
    page.locator("#run-form button[type=submit]").click()
    card = page.locator("#cards [data-run-card]").first
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    with app.app_context():
        run = db.session.scalars(select(Run)).one()
        assert run.input["image_urls"] == urls(page)
    # "Use as reference" keeps working: it fills the list with the run's output.
    page.goto(f"/playground?reference={run.id}")
    expect(items(page)).to_have_count(1)
    assert urls(page)[0].split("/files/generated/")[1].endswith(".png")
    expect(items(page).first.locator("img")).to_have_js_property("complete", True)
    assert noise == []


def test_visitors_are_asked_to_sign_in(app, page: Page, problems):
    page.goto("/playground?model=local/sketch")
    choose(page, ("red.png", png(), "image/png"))
    expect(field(page).locator("[data-upload-error]")).to_contain_text("Sign in to upload images")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(InputFile)) == 0
