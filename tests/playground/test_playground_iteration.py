"""Iterating in the Playground over the test client: restoring a run (?from=), using an
output as a reference (?reference=), a recipe (POST /playground/restore), the seed
control, the card actions and running one form on several models."""
from __future__ import annotations

import html
import json
import re

import pytest

from runbase_web import state
from runbase_web.catalog import Catalog
from runbase_web.catalog.specs import PACKAGED_PATH
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.services import runs
from tests.web import HTMX, run_count, sign_in

SKETCH = {"model": "local/sketch", "prompt": "a lighthouse at dusk"}


def create(client, data, status=201):
    response = client.post("/playground/runs", data=data, headers=HTMX)
    assert response.status_code == status, response.text
    return response


def run_ids(response) -> list[str]:
    return re.findall(r'<article id="run-(run_[a-z0-9]+)"', response.text)


def stored(app, run_id) -> Run:
    with app.app_context():
        return db.session.get(Run, run_id)


def finish(app, run_id, urls) -> None:
    """End a run as succeeded with these output paths (no worker needed)."""
    with app.app_context():
        assert runs.mark_succeeded(db.session, run_id, urls, public_url="")
        db.session.commit()


def input_value(page: str, name: str) -> str | None:
    match = re.search(rf'<input id="f-{name}"[^>]*value="([^"]*)"', page, re.S)
    return html.unescape(match.group(1)) if match else None


def textarea(page: str, name: str) -> str:
    return html.unescape(re.search(rf'<textarea id="f-{name}"[^>]*>([^<]*)</textarea>', page).group(1))


def selected(page: str, name: str) -> str:
    block = re.search(rf'<select id="f-{name}".*?</select>', page, re.S).group(0)
    return re.search(r'<option value="([^"]*)" selected>', block).group(1)


def parent_field(page: str) -> str | None:
    match = re.search(r'<input type="hidden" name="parent_id" value="([^"]*)">', page)
    return match.group(1) if match else None


def seed_mode(page: str) -> str:
    return re.search(r'name="seed_mode" value="(\w+)" checked', page).group(1)


# --- ?from= ----------------------------------------------------------------------------------


def test_from_restores_every_field_and_the_new_run_records_its_parent(app, signed_in):
    (first,) = run_ids(create(signed_in, {**SKETCH, "aspect_ratio": "16:9", "resolution": "1K",
                                          "num_images": "3", "seed": "4242"}))
    page = signed_in.get(f"/playground?from={first}").text
    assert '<input type="hidden" name="model" value="local/sketch">' in page
    assert textarea(page, "prompt") == "a lighthouse at dusk"
    assert selected(page, "aspect_ratio") == "16:9" and selected(page, "resolution") == "1K"
    assert input_value(page, "num_images") == "3" and input_value(page, "seed") == "4242"
    assert seed_mode(page) == "keep"  # the restored seed is used again
    assert parent_field(page) == first
    assert 'aria-current="true"' in re.search(r'href="/playground\?model=local/sketch".*?>', page, re.S).group(0)

    posted = {**SKETCH, "prompt": "a lighthouse at dawn", "aspect_ratio": "16:9", "resolution": "1K",
              "num_images": "3", "seed": "4242", "seed_mode": "keep", "parent_id": first}
    (second,) = run_ids(create(signed_in, posted))
    child = stored(app, second)
    assert child.parent_id == first and child.input["seed"] == 4242
    assert child.input["prompt"] == "a lighthouse at dawn"


def test_from_as_an_htmx_form_for_edit_and_rerun(signed_in):
    (run_id,) = run_ids(create(signed_in, {"model": "local/test", "prompt": "again",
                                           "outcome": "fail", "delay_ms": "5"}))
    fragment = signed_in.get(f"/playground/form?from={run_id}", headers=HTMX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert '<form id="run-form"' in fragment.text and parent_field(fragment.text) == run_id
    assert selected(fragment.text, "outcome") == "fail" and input_value(fragment.text, "delay_ms") == "5"
    plain = signed_in.get(f"/playground/form?from={run_id}")
    assert plain.status_code == 302 and plain.headers["Location"] == f"/playground?from={run_id}"


def test_from_a_foreign_or_unknown_run_is_refused_with_a_notice(app, signed_in, make_user):
    (run_id,) = run_ids(create(signed_in, {**SKETCH, "prompt": "alice's secret prompt"}))
    mallory = app.test_client()
    sign_in(mallory, make_user("mallory@example.com").email)
    for url in (f"/playground?from={run_id}", "/playground?from=run_doesnotexist",
                f"/playground?reference={run_id}"):
        page = mallory.get(url)
        assert page.status_code == 200
        text = html.unescape(page.text)
        assert "data-restore-notice" in text and "so the form starts empty" in text
        assert "alice's secret prompt" not in text and parent_field(text) is None
        assert textarea(text, "prompt") == ""
    # A forged parent_id is refused too, and nothing is charged.
    response = create(mallory, {**SKETCH, "parent_id": run_id}, status=422)
    assert "No run with id" in response.text
    assert run_count(app) == 1


def test_from_needs_sign_in(app, signed_in):
    (run_id,) = run_ids(create(signed_in, SKETCH))
    page = app.test_client().get(f"/playground?from={run_id}").text
    assert "Sign in to open one of your runs" in page and "a lighthouse at dusk" not in page


# --- ?reference= ---------------------------------------------------------------------------------


def test_reference_switches_to_a_model_with_reference_images(app, signed_in, tmp_path):
    # A catalog where local/sketch takes no reference images, as before it took them.
    catalog = json.loads(PACKAGED_PATH.read_text())
    for entry in catalog["models"]:
        if entry["id"] == "local/sketch":
            del entry["input_schema"]["properties"]["image_urls"]
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    app.extensions[state.CATALOG] = Catalog.load(str(tmp_path / "catalog.json"))
    app.config["PROVIDER_ENV"] = {"GEMINI_API_KEY": "test"}
    (run_id,) = run_ids(create(signed_in, {**SKETCH, "aspect_ratio": "4:3", "seed": "9"}))
    finish(app, run_id, ["/files/generated/first-output-aaaaaaaa.png",
                         "/files/generated/second-output-aaaaaaa.png"])
    page = signed_in.get(f"/playground?reference={run_id}").text
    # That local/sketch takes no reference images: the first available image model that does.
    assert '<input type="hidden" name="model" value="google/nano-banana">' in page
    assert textarea(page, "image_urls") == "http://localhost/files/generated/first-output-aaaaaaaa.png"
    assert textarea(page, "prompt") == "a lighthouse at dusk" and selected(page, "aspect_ratio") == "4:3"
    assert parent_field(page) == run_id


def test_reference_keeps_local_sketch_which_takes_reference_images(app, signed_in):
    (run_id,) = run_ids(create(signed_in, {**SKETCH, "aspect_ratio": "4:3"}))
    finish(app, run_id, ["/files/generated/first-output-aaaaaaaa.png"])
    page = signed_in.get(f"/playground?reference={run_id}").text
    assert '<input type="hidden" name="model" value="local/sketch">' in page
    assert textarea(page, "image_urls") == "http://localhost/files/generated/first-output-aaaaaaaa.png"


def test_reference_keeps_a_model_that_takes_reference_images(app, signed_in):
    app.config.update(PROVIDER_ENV={"GEMINI_API_KEY": "test"}, PUBLIC_URL="https://rb.example")
    (run_id,) = run_ids(create(signed_in, {"model": "google/nano-banana-2", "prompt": "a cat",
                                           "resolution": "2K"}))
    finish(app, run_id, ["/files/generated/cat-image-aaaaaaaaaaa.png"])
    page = signed_in.get(f"/playground?reference={run_id}").text
    assert '<input type="hidden" name="model" value="google/nano-banana-2">' in page
    assert textarea(page, "image_urls") == "https://rb.example/files/generated/cat-image-aaaaaaaaaaa.png"
    assert selected(page, "resolution") == "2K"


def test_reference_needs_an_image_output(app, signed_in):
    (pending,) = run_ids(create(signed_in, SKETCH))
    assert "no output yet" in signed_in.get(f"/playground?reference={pending}").text
    (video,) = run_ids(create(signed_in, {"model": "local/sketch-video", "prompt": "waves"}))
    finish(app, video, ["/files/generated/waves-video-aaaaaaaaa.mp4"])
    assert "Only image outputs" in signed_in.get(f"/playground?reference={video}").text


# --- recipe from a PNG --------------------------------------------------------------------------------


def test_restore_from_a_recipe(app, signed_in, make_user):
    (own,) = run_ids(create(signed_in, SKETCH))
    recipe = {"model": "local/sketch", "runId": own, "run": f"http://localhost/runs/{own}",
              "input": {"prompt": "from a <file>", "num_images": 2, "seed": 77,
                        "not_a_field": "ignored", "aspect_ratio": "2:3"}}
    response = signed_in.post("/playground/restore", data={"recipe": json.dumps(recipe)})
    assert response.status_code == 200 and '<form id="run-form"' in response.text
    assert textarea(response.text, "prompt") == "from a <file>"
    assert "from a &lt;file&gt;" in response.text
    assert input_value(response.text, "num_images") == "2" and input_value(response.text, "seed") == "77"
    assert selected(response.text, "aspect_ratio") == "2:3"
    assert "not_a_field" not in response.text and parent_field(response.text) == own

    # Someone else's file restores the settings but records no parent.
    other = app.test_client()
    sign_in(other, make_user("bob@example.com").email)
    response = other.post("/playground/restore", data={"recipe": json.dumps(recipe)})
    assert response.status_code == 200 and parent_field(response.text) is None


@pytest.mark.parametrize(("recipe", "message"), [
    ("", "carries no Runbase recipe"),
    ("{not json", "carries no Runbase recipe"),
    ("[1, 2]", "carries no Runbase recipe"),
    (json.dumps({"model": "acme/nothing", "input": {}}), "which this server doesn't offer"),
])
def test_restore_refuses_what_is_not_a_usable_recipe(client, recipe, message):
    response = client.post("/playground/restore", data={"recipe": recipe})
    assert response.status_code == 400 and message in response.text
    assert response.mimetype == "text/plain"


# --- seed control ------------------------------------------------------------------------------------


def test_seed_new_draws_a_new_seed_each_run_even_if_one_is_typed(app, signed_in):
    seeds = set()
    for _ in range(3):
        (run_id,) = run_ids(create(signed_in, {**SKETCH, "seed": "42", "seed_mode": "new"}))
        seeds.add(stored(app, run_id).input["seed"])
    assert len(seeds) == 3 and 42 not in seeds


def test_seed_keep_uses_the_typed_seed_or_the_last_one(app, signed_in):
    (first,) = run_ids(create(signed_in, {**SKETCH, "seed_mode": "new"}))
    drawn = stored(app, first).input["seed"]
    (kept,) = run_ids(create(signed_in, {**SKETCH, "seed": "", "seed_mode": "keep"}))
    assert stored(app, kept).input["seed"] == drawn
    (typed,) = run_ids(create(signed_in, {**SKETCH, "seed": "31337", "seed_mode": "keep"}))
    assert stored(app, typed).input["seed"] == 31337
    (again,) = run_ids(create(signed_in, {"model": "local/test", "prompt": "x", "seed_mode": "keep"}))
    assert stored(app, again).input["seed"] == 31337


def test_seed_control_is_shown_only_for_models_with_a_seed(client):
    assert 'name="seed_mode" value="new" checked' in client.get("/playground?model=local/sketch").text
    assert "seed_mode" not in client.get("/playground?model=openai/gpt-image-1").text


def test_card_shows_its_seed_and_actions(signed_in):
    response = create(signed_in, {**SKETCH, "seed": "5150", "seed_mode": "keep"})
    (run_id,) = run_ids(response)
    card = response.text
    assert 'data-seed="5150"' in card and 'data-use-seed="5150"' in card
    assert f'hx-get="/playground/form?from={run_id}"' in card and 'hx-target="#run-form"' in card
    assert f'href="/playground?from={run_id}"' in card
    assert f'href="/runs/{run_id}">Open</a>' in card
    assert f'value="{run_id}" data-compare' in card


def test_page_has_the_compare_button_and_recipe_drop(client):
    page = client.get("/playground").text
    assert re.search(r'<button [^>]*hidden data-compare-go\s+data-compare-url="/runs/compare"', page)
    assert 'data-recipe-drop' in page and 'type="file" accept="image/png"' in page
    assert '/static/js/playground.js' in page and '/static/css/playground.css' in page


# Several models at once: a grid whose axis is the model (tests/playground/test_grid.py).
