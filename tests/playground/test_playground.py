"""The Playground over the test client: picker, forms, price, runs and status cards.

htmx endpoints are checked with and without `HX-Request`.
"""
from __future__ import annotations

import html
import re

import pytest

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.presenters.run_form import price_label
from tests.conftest import wait_for_run
from tests.web import HTMX, balance_of, card_root, field_error, run_count, sign_in

SKETCH = {"model": "local/sketch", "prompt": "a lighthouse at dusk"}


def create(client, data, **headers):
    """POST the Playground form as htmx does."""
    return client.post("/playground/runs", data=data, headers={**HTMX, **headers})


def run_id_of(response) -> str:
    return re.search(r'id="run-(run_[a-z0-9]+)"', response.text).group(1)


# --- page, picker, form ---------------------------------------------------------------


def test_page_lists_every_model_with_price_and_what_enables_it(app, client):
    page = client.get("/playground")
    assert page.status_code == 200
    text = html.unescape(page.text)
    for spec in state.catalog(app).all():
        assert f'data-search="{spec.id} ' in text
        assert price_label(spec) in text
    assert "needs OPENAI_API_KEY" in text and "needs GEMINI_API_KEY" in text
    assert "needs KLING_ACCESS_KEY, KLING_SECRET_KEY" in text
    assert "needs" not in re.search(r'href="/playground\?model=local/sketch".*?</a>', text, re.S).group(0)


def test_configured_provider_is_not_marked(app, client):
    app.config["PROVIDER_ENV"] = {"OPENAI_API_KEY": "sk-test"}
    text = client.get("/playground").text
    assert "needs OPENAI_API_KEY" not in text and "needs GEMINI_API_KEY" in text


def test_picker_groups_by_provider_available_models_first(client):
    text = client.get("/playground").text
    groups = re.findall(r'<div class="picker-group-label" id="pg-(\w)-\d+">([^<]+)</div>', text)
    assert groups[0] == ("a", "local") and {g for _, g in groups if _ == "a"} == {"local"}
    unavailable = [g for kind, g in groups if kind == "u"]
    assert len(unavailable) == len(set(unavailable))
    assert {"openai", "google", "bytedance", "kling", "hailuo"} <= set(unavailable)
    # The models a fresh server can't run are collapsed under one summary.
    assert "Not enabled on this server (16)" in text
    assert re.search(r'<details class="picker-more" data-picker-more>', text)  # closed
    # One tab stop per list: the chosen model.
    assert len(re.findall(r'role="option"[^>]*tabindex="0"', text, re.S)) == 2


def test_picker_opens_the_unavailable_list_when_its_model_is_chosen(client):
    text = client.get("/playground?model=openai/gpt-image-1").text
    assert re.search(r'<details class="picker-more" data-picker-more open>', text)
    assert re.search(r'tabindex="0"\s+aria-selected="true"', text)


def test_sketch_form_is_built_from_its_schema(client):
    text = client.get("/playground?model=local/sketch").text
    assert '<input type="hidden" name="model" value="local/sketch">' in text
    assert re.search(r'<textarea id="f-prompt" name="prompt"[^>]* required minlength="1" maxlength="4000"', text)
    assert '<option value="1:1" selected>1:1</option>' in text
    assert '<option value="512" selected>512</option>' in text
    num_images = re.search(r'<input id="f-num_images"[^>]*>', text, re.S).group(0)
    assert 'type="number"' in num_images and 'value="1"' in num_images
    assert 'min="1"' in num_images and 'max="4"' in num_images and 'step="1"' in num_images
    seed = re.search(r'<input id="f-seed"[^>]*>', text, re.S).group(0)
    assert 'value=""' in seed and 'placeholder="random"' in seed and 'max="2147483647"' in seed
    assert 'data-price="1000"' in text and "$0.001" in text
    assert "submit" in text and "disabled" not in re.search(r'<button type="submit"[^>]*>', text).group(0)


def test_other_widgets_checkbox_and_url_list(client):
    text = client.get("/playground?model=bytedance/seedance-2").text
    assert re.search(r'<input id="f-generate_audio" name="generate_audio" type="checkbox" value="true"', text)
    assert re.search(r'<textarea id="f-image_urls" name="image_urls"', text)
    assert "One URL per line, up to 1." in text


def test_unavailable_model_form_shows_but_submit_is_disabled(client):
    text = client.get("/playground?model=openai/gpt-image-1").text
    assert '<textarea id="f-prompt"' in text
    button = re.search(r'<button type="submit"[^>]*>', text).group(0)
    assert "disabled" in button
    assert "needs <code>OPENAI_API_KEY</code>" in text


def test_unknown_model_is_404(client):
    assert client.get("/playground?model=nope/nothing").status_code == 404


def test_form_fragment_for_the_picker(client):
    fragment = client.get("/playground/form?model=local/test", headers=HTMX)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert '<form id="run-form"' in fragment.text and "<html" not in fragment.text
    assert '<option value="fail">fail</option>' in fragment.text
    plain = client.get("/playground/form?model=local/test")
    assert plain.status_code == 302 and plain.headers["Location"] == "/playground?model=local/test"


# --- price ------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "micros", "shown"), [
    ({"num_images": "1"}, 1000, "$0.001"),
    ({"num_images": "3"}, 3000, "$0.003"),
    ({}, 1000, "$0.001"),
    ({"num_images": "3", "aspect_ratio": "bad"}, 3000, "$0.003"),  # not a priced field
])
def test_price_fragment_follows_the_form(client, query, micros, shown):
    response = client.get("/playground/price", query_string={"model": "local/sketch", **query},
                          headers=HTMX)
    assert response.status_code == 200 and "<html" not in response.text
    assert f'<strong class="price-value" data-price="{micros}">{shown}</strong>' in response.text


def test_price_of_a_priced_field_out_of_range_is_not_guessed(client):
    response = client.get("/playground/price", headers=HTMX,
                          query_string={"model": "local/sketch", "num_images": "9"})
    assert "Number of images must be at most 4" in response.text and "data-price" not in response.text


def test_price_of_tiers_and_duration(client):
    query = {"model": "local/sketch-video", "duration": "4"}
    assert "$0.008" in client.get("/playground/price", query_string=query).text
    query = {"model": "bytedance/seedance-2", "resolution": "1080p", "duration": "10"}
    assert "$2.25" in client.get("/playground/price", query_string=query).text


def test_price_wrapper_is_never_swapped_only_its_content(client):
    """The trigger sits on a wrapper the answers never replace (a change made while an
    answer is being swapped in is still heard), and the wrapper doesn't inherit the
    form's hx-disabled-elt (htmx warned on every price refresh)."""
    page = client.get("/playground", query_string={"model": "local/sketch"}).text
    root = re.search(r'<div id="price"[^>]*>', page, re.S).group(0)
    assert 'hx-get="/playground/price"' in root and 'hx-include="closest form"' in root
    assert 'hx-target="this"' in root and 'hx-swap="innerHTML"' in root
    assert 'hx-disabled-elt="unset"' in root
    assert "change from:closest form" in root and 'hx-params="not prompt,csrf_token"' in root
    fragment = client.get("/playground/price", query_string={"model": "local/sketch"}).text
    assert 'id="price"' not in fragment and 'data-price="1000"' in fragment


# --- creating runs -------------------------------------------------------------------------


def test_run_is_created_through_the_service_and_its_card_polls(app, signed_in, user):
    response = create(signed_in, {**SKETCH, "num_images": "2", "aspect_ratio": "16:9"})
    assert response.status_code == 201
    root = card_root(response.text)
    run_id = run_id_of(response)
    assert f'hx-get="/playground/runs/{run_id}/card"' in root
    assert 'hx-trigger="load delay:1s"' in root and 'hx-swap="outerHTML"' in root
    assert "pending" in response.text and "$0.002" in response.text
    assert 'id="nav-balance"' in response.text and 'hx-swap-oob="true"' in response.text
    assert "$0.998" in response.text
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert (run.source, run.api_key_id, run.user_id) == ("playground", None, user.id)
        assert run.input["num_images"] == 2 and run.input["aspect_ratio"] == "16:9"
        assert isinstance(run.input["seed"], int)
    assert balance_of(app, user.id) == 1_000_000 - 2000


def test_bad_input_returns_the_form_with_the_error_and_creates_nothing(app, signed_in, user):
    response = create(signed_in, {**SKETCH, "aspect_ratio": "7:7", "num_images": "2"})
    assert response.status_code == 422
    assert '<form id="run-form"' in response.text and "<article" not in response.text
    assert field_error(response.text, "aspect_ratio").startswith("must be one of: 1:1, 2:3")
    assert 'aria-invalid="true"' in response.text
    # What was typed is kept.
    assert ">a lighthouse at dusk</textarea>" in response.text
    assert re.search(r'<input id="f-num_images"[^>]*value="2"', response.text, re.S)
    assert run_count(app) == 0 and balance_of(app, user.id) == 1_000_000


def test_missing_prompt(app, signed_in):
    response = create(signed_in, {"model": "local/sketch", "prompt": ""})
    assert response.status_code == 422 and field_error(response.text, "prompt") == "is required"
    assert run_count(app) == 0


def test_bad_image_url_error_is_shown_by_the_url_list(app, signed_in):
    app.config["PROVIDER_ENV"] = {"GEMINI_API_KEY": "test"}
    data = {"model": "google/nano-banana", "prompt": "edit this",
            "image_urls": "https://example.com/a.png\nftp://example.com/b.png"}
    response = create(signed_in, data)
    assert response.status_code == 422
    assert field_error(response.text, "image_urls") == "URL 2 must be an http(s) URL"
    assert "ftp://example.com/b.png</textarea>" in response.text
    assert run_count(app) == 0


def test_unavailable_model_is_refused_in_the_form(app, signed_in):
    response = create(signed_in, {"model": "openai/gpt-image-1", "prompt": "hello"})
    assert response.status_code == 422
    assert "set OPENAI_API_KEY" in html.unescape(response.text)
    assert run_count(app) == 0


def test_insufficient_balance_is_a_form_error(app, client, make_user):
    poor = make_user("poor@example.com", credit_micros=500)
    sign_in(client, poor.email)
    response = create(client, SKETCH)
    assert response.status_code == 422
    assert "Your balance is too low for this run, which costs $0.001." in response.text
    assert run_count(app) == 0 and balance_of(app, poor.id) == 500


def test_prompt_is_escaped_in_the_card(signed_in):
    response = create(signed_in, {**SKETCH, "prompt": "<img src=x onerror=alert(1)>"})
    assert "<img src=x" not in response.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text


def test_plain_post_redirects_to_the_run_page(signed_in):
    response = signed_in.post("/playground/runs", data=SKETCH)
    assert response.status_code == 303
    page = signed_in.get(response.headers["Location"])
    assert page.status_code == 200 and "<html" in page.text and "data-run-card" in page.text


def test_plain_post_with_errors_renders_the_whole_page(signed_in):
    response = signed_in.post("/playground/runs", data={**SKETCH, "num_images": "0"})
    assert response.status_code == 422 and "<html" in response.text
    assert field_error(response.text, "num_images") == "must be at least 1"


# --- anonymous visitors ----------------------------------------------------------------------


def test_anonymous_submit_keeps_the_form_through_sign_up(app, client):
    """Run without an account: the form is kept on the server (not in the URL), the
    visitor is offered sign-up, and comes back to the form as filled in, once."""
    prompt = "a long and private prompt " * 20
    response = create(client, {**SKETCH, "prompt": prompt, "aspect_ratio": "16:9"})
    assert response.status_code == 200
    signup_url = response.headers["HX-Redirect"]
    assert signup_url.startswith("/auth/signup?next=") and "prompt" not in signup_url
    assert run_count(app) == 0
    form = client.get(signup_url).text
    back_to = html.unescape(re.search(r'name="next" value="([^"]+)"', form).group(1))
    back = client.post("/auth/signup", data={"email": "new@example.com",
                                             "password": "password123", "next": back_to})
    page = client.get(back.headers["Location"]).text
    assert html.escape(prompt.strip(), quote=False) in page
    assert '<option value="16:9" selected>' in page and "as you left it" in page
    again = client.get(back.headers["Location"]).text  # taken once: the form starts empty
    assert "as you left it" not in again and "private prompt" not in again


def test_anonymous_plain_submit_is_sent_to_sign_up(client):
    response = client.post("/playground/runs", data=SKETCH)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/auth/signup?next=/playground")


def test_anonymous_visitors_can_browse(client):
    page = client.get("/playground?model=local/sketch").text
    assert "Run asks you to create a free account" in html.unescape(page)
    assert client.get("/playground/form?model=local/test", headers=HTMX).status_code == 200
    assert client.get("/playground/price?model=local/test", headers=HTMX).status_code == 200


# --- status cards ------------------------------------------------------------------------------


def test_card_of_another_users_run_is_404(app, signed_in, client, make_user):
    run_id = run_id_of(create(signed_in, SKETCH))
    other = app.test_client()
    sign_in(other, make_user("mallory@example.com").email)
    assert other.get(f"/playground/runs/{run_id}/card", headers=HTMX).status_code == 404
    assert other.get(f"/runs/{run_id}").status_code == 404
    assert signed_in.get("/playground/runs/run_doesnotexist/card", headers=HTMX).status_code == 404


def test_card_needs_sign_in(signed_in, app):
    run_id = run_id_of(create(signed_in, SKETCH))
    anonymous = app.test_client()
    response = anonymous.get(f"/playground/runs/{run_id}/card", headers=HTMX)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/auth/login")


def test_active_card_htmx_and_plain(signed_in):
    run_id = run_id_of(create(signed_in, {"model": "local/test", "prompt": "slow", "delay_ms": "5000"}))
    fragment = signed_in.get(f"/playground/runs/{run_id}/card", headers=HTMX)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert "<html" not in fragment.text and 'hx-trigger="load delay:1s"' in card_root(fragment.text)
    assert 'id="nav-balance"' not in fragment.text  # nothing to refresh while it runs
    plain = signed_in.get(f"/playground/runs/{run_id}/card")
    assert plain.status_code == 303 and plain.headers["Location"] == f"/runs/{run_id}"
    assert "HX-Request" in plain.headers["Vary"]


def test_succeeded_card_shows_images_and_stops_polling(app, signed_in, worker):
    run_id = run_id_of(create(signed_in, {**SKETCH, "num_images": "2"}))
    wait_for_run(app, run_id)
    card = signed_in.get(f"/playground/runs/{run_id}/card", headers=HTMX).text
    root = card_root(card)
    assert "hx-trigger" not in root and "hx-get" not in root
    assert 'data-status="succeeded"' in root
    images = re.findall(r'<img src="(/files/generated/[A-Za-z0-9_-]+\.png)"', card)
    assert len(images) == 2
    for path in images:
        assert f'data-copy="http://localhost{path}"' in card
        with signed_in.get(path) as download:
            assert download.status_code == 200 and download.mimetype == "image/png"
    assert "$0.002" in card and 'id="nav-balance"' in card


def test_video_card_has_a_playable_video(app, signed_in, worker):
    run_id = run_id_of(create(signed_in, {"model": "local/sketch-video", "prompt": "waves",
                                          "duration": "1"}))
    assert wait_for_run(app, run_id, timeout=60).status == "succeeded"
    card = signed_in.get(f"/playground/runs/{run_id}/card", headers=HTMX).text
    assert re.search(r'<video src="/files/generated/([A-Za-z0-9_-]+)\.mp4" controls muted playsinline '
                     r'preload="metadata" poster="/files/generated/\1\.mp4/poster"', card)


def test_failed_card_shows_error_and_refund(app, signed_in, user, worker):
    run_id = run_id_of(create(signed_in, {"model": "local/test", "prompt": "x", "outcome": "fail"}))
    assert wait_for_run(app, run_id).status == "failed"
    card = signed_in.get(f"/playground/runs/{run_id}/card", headers=HTMX).text
    assert "hx-trigger" not in card_root(card)
    assert "refunded $0.0001" in card and "run-error-message" in card
    assert re.search(r'id="nav-balance"[^>]*hx-swap-oob="true">\$1\.00<', card)
    assert balance_of(app, user.id) == 1_000_000


def test_old_run_page_address_redirects_to_the_run_page(app, signed_in):
    run_id = run_id_of(create(signed_in, SKETCH))
    old = signed_in.get(f"/playground/runs/{run_id}")
    assert old.status_code == 302 and old.headers["Location"] == f"/runs/{run_id}"
    page = signed_in.get(old.headers["Location"])
    assert page.status_code == 200 and run_id in page.text and "<html" in page.text
