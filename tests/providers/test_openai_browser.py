"""The Playground with a real provider adapter: OpenAI pointed at its fake, in Chromium."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from runbase_web.catalog import Catalog
from tests.fakes import openai as fake_openai
from tests.fakes.server import FakeServer, FakeState
from tests.support.pages import RUN_TIMEOUT_MS, newest_card, pick, sign_up, submit

pytestmark = pytest.mark.browser
MODEL = "openai/gpt-image-2"


@pytest.fixture
def fake():
    """The fake OpenAI Images API; yields its state (requests it received)."""
    state = FakeState()
    server = FakeServer(fake_openai.make_app(state)).start()
    state.data["url"] = server.url
    yield state
    server.stop()


@pytest.fixture
def app_config(fake):
    """OpenAI configured against the fake, CSRF on as in production."""
    return {"WTF_CSRF_ENABLED": True, "FETCH_ALLOW_LOOPBACK": True,
            "PROVIDER_ENV": {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.data["url"] + "/v1"}}


def test_openai_model_is_available_and_runs_in_the_playground(page: Page, fake):
    schema = Catalog.load().get(MODEL).input_schema["properties"]
    sign_up(page)
    option = page.locator(f'[data-model-option][href$="model={MODEL}"]')
    expect(option).not_to_have_class("is-unavailable")
    expect(option.locator(".needs")).to_have_count(0)

    pick(page, MODEL)
    for field in ("aspect_ratio", "resolution"):
        values = page.locator(f"#f-{field} option").evaluate_all("options => options.map(o => o.value)")
        assert values == schema[field]["enum"]
    page.locator("#f-aspect_ratio").select_option("16:9")
    submit(page, "a lighthouse at dusk")

    card = newest_card(page)
    expect(card).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    image = card.locator("img")
    expect(image).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    (call,) = fake.calls_to("POST", "/v1/images/generations")
    assert call.json["model"] == "gpt-image-2" and call.json["prompt"] == "a lighthouse at dusk"
