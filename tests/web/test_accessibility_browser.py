"""Accessibility of the main pages, checked with axe-core (vendored under
tests/support/axe) in Chromium, in light and dark mode: no violation of the WCAG 2.1 A
and AA rules, and no console error or warning while the pages load."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import User
from runbase_web.services import keys, run_creation, sharing
from tests.conftest import wait_for_run
from tests.support.pages import sign_up

pytestmark = pytest.mark.browser

AXE = (Path(__file__).resolve().parents[1] / "support" / "axe" / "axe.min.js").read_text()
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page: Page) -> list[str]:
    """axe's WCAG 2.1 A/AA violations on the page as loaded, one line each."""
    # Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
    page.evaluate(AXE + "\n;undefined")
    found = page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
        return result.violations.map(v => v.id + " ×" + v.nodes.length + ": " +
            v.nodes.slice(0, 3).map(n => n.target.join(" ") + " — " + n.failureSummary.split("\\n").slice(1, 2).join("")).join(" | "));
    }""", WCAG)
    return found


def make_runs(app, user_id: int) -> tuple[str, str]:
    """A succeeded image run (shared) and a failed one; returns (run id, share token)."""
    with app.app_context():
        ok = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                     user_id=user_id, api_key_id=None, model_id="local/sketch",
                                     raw_input={"prompt": "A lighthouse at dusk, ink sketch"})
        bad = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user_id, api_key_id=None, model_id="local/test",
                                      raw_input={"prompt": "meant to fail", "outcome": "fail"})
        db.session.commit()
        ids = ok.id, bad.id
    state.wake_worker(app)
    for run_id in ids:
        wait_for_run(app, run_id)
    with app.app_context():
        token = sharing.share_run(db.session, user_id, ids[0], hide_prompt=False).share_token
        db.session.commit()
    return ids[0], token


def make_video_run(app, user_id: int) -> str:
    """A succeeded one-second local/sketch-video run; returns its id."""
    with app.app_context():
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user_id, api_key_id=None,
                                      model_id="local/sketch-video",
                                      raw_input={"prompt": "Waves at noon", "duration": 1})
        db.session.commit()
        run_id = run.id
    state.wake_worker(app)
    wait_for_run(app, run_id, timeout=60)
    return run_id


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_main_pages_have_no_wcag_violations_or_console_noise(app, page: Page, scheme):
    page.emulate_media(color_scheme=scheme)
    noise: list[str] = []
    page.on("console", lambda msg: noise.append(f"{page.url} {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    email = sign_up(page)
    with app.app_context():
        user_id = db.session.query(User).filter_by(email=email).one().id
    run_id, token = make_runs(app, user_id)
    video_id = make_video_run(app, user_id)
    found = {}
    for path in ("/playground?model=local/sketch", f"/runs/{run_id}", "/runs", f"/s/{token}",
                 "/settings/keys", "/settings/credits", "/settings/webhooks", "/models",
                 "/models/local/sketch", "/docs", f"/runs/{video_id}",
                 f"/runs/compare?ids={run_id},{video_id}"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        problems = violations(page)
        if problems:
            found[path] = problems
    # The output component's pop-ups: the lightbox, and the run page's Share menu.
    page.goto(f"/runs/{run_id}")
    page.locator("#run-live a[data-lightbox]").first.click()
    expect(page.locator("dialog.lightbox")).to_be_visible()
    if problems := violations(page):
        found["lightbox"] = problems
    page.keyboard.press("Escape")
    page.locator("details[data-share-menu] > summary").click()
    expect(page.locator("[data-share-panel]")).to_be_visible()
    if problems := violations(page):
        found["share menu"] = problems
    assert found == {}, "\n".join(f"{path}:\n  " + "\n  ".join(lines) for path, lines in found.items())
    assert noise == []


PHONE_PAGES = ("/playground?model=local/sketch", "/runs", "/settings/keys", "/settings/credits",
               "/settings/webhooks", "/models", "/models/local/sketch", "/docs", "/dashboard")


def test_phone_layout_one_row_header_no_sideways_scrolling(app, chromium, live_server):
    """At 390×844 on a touch screen: a one-row header, the prompt on the first screen, no
    page scrolls sideways, and no Ctrl+Enter hint (there is no Ctrl key)."""
    context = chromium.new_context(base_url=live_server, viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        email = sign_up(page)
        with app.app_context():
            user_id = db.session.query(User).filter_by(email=email).one().id
        run_id, _token = make_runs(app, user_id)
        with app.app_context():
            keys.create_key(db.session, user_id, "phone key")
            db.session.commit()
        wide = {}
        for path in PHONE_PAGES + (f"/runs/{run_id}",):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                wide[path] = width
            assert page.locator(".topbar").bounding_box()["height"] <= 64, path
        assert wide == {}
        page.goto("/settings/keys")  # the key's actions are on screen, not off to the side
        disable = page.get_by_role("button", name="Disable")
        box = disable.bounding_box()
        assert box["x"] + box["width"] <= 390 and disable.is_visible()
        page.goto("/dashboard")  # thumbnails, not a second table of runs
        expect(page.locator("[data-run-link] .thumb").first).to_be_visible()
        page.goto("/playground?model=local/sketch")
        prompt = page.locator("#f-prompt").bounding_box()
        assert prompt["y"] < 844, prompt
        assert page.locator("kbd.shortcut").is_hidden()
    finally:
        context.close()
