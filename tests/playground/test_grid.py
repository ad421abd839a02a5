"""The Playground's "Grid" over the test client: the controls, the price, creating a
grid (all or none, errors by the controls or by the field), the grid page, re-running,
sharing and the gallery's grid tiles."""
from __future__ import annotations

import html
import re


from runbase_web.extensions import db
from runbase_web.models import Batch, Run
from runbase_web.services import runs
from tests.conftest import wait_for_run
from tests.support.png_recipe import read_png_recipe
from tests.web import HTMX, balance_of, run_count, sign_in

GRID = {"model": "local/test", "prompt": "a grid of tests", "grid": "1",
        "grid_x": "seed", "grid_x_values": "1, 2, 3",
        "grid_y": "f:outcome", "grid_y_pick": ["succeed", "fail"]}


def grid_price(client, **query) -> str:
    response = client.post("/playground/price/grid", headers=HTMX, data=query)
    assert response.status_code == 200 and "<html" not in response.text
    return html.unescape(response.text)


def batch_of(app) -> Batch:
    with app.app_context():
        return db.session.query(Batch).one()


def test_form_offers_a_grid_with_the_models_settings_as_axes(client):
    page = client.get("/playground?model=local/sketch").text
    assert 'name="grid" value="1"' in page and 'id="grid-price"' in page
    block = re.search(r'<select id="grid-x".*?</select>', page, re.S).group(0)
    offered = re.findall(r'<option value="([^"]*)"', block)
    assert offered == ["", "seed", "f:aspect_ratio", "f:resolution", "f:num_images", "prompt",
                       "replace", "model"]
    assert 'name="multi"' not in page  # "Multiple models" is the grid's model axis now


def test_picking_an_axis_draws_its_values_only(client):
    form = {"model": "local/sketch", "grid": "1", "grid_x": "f:aspect_ratio", "grid_y": "model"}
    text = client.post("/playground/grid/axes/x", headers=HTMX, data=form).text
    assert 'name="grid_x_pick" value="16:9"' in text and "grid_y" not in text
    assert "field-error" not in text  # nothing picked yet is no error yet
    text = client.post("/playground/grid/axes/y", headers=HTMX, data=form).text
    assert 'name="grid_y_pick" value="local/test"' in text and "grid_x" not in text
    assert client.post("/playground/grid/axes/z", headers=HTMX, data=form).status_code == 404


def test_price_counts_the_runs_and_sums_each_cells_price(client):
    text = grid_price(client, **{**GRID, "model": "local/sketch", "grid_y": "f:num_images",
                                 "grid_y_values": "1, 2", "grid_y_pick": []})
    assert 'data-grid-runs="6"' in text and "6 runs, total" in text
    assert 'data-grid-total="9000"' in text  # 3 × ($0.001 + $0.002)


def test_price_says_what_is_missing_and_caps_the_grid(client):
    assert "Columns: Type seeds" in grid_price(client, **{**GRID, "grid_x_values": ""})
    text = grid_price(client, **{**GRID, "grid_x_values": "19 random"})
    assert "at most 36 runs; this one would make 38" in text and "data-grid-total" not in text
    assert grid_price(client, **{**GRID, "grid": ""}).strip() == ""


def test_price_shows_not_enough_credit(app, client, make_user):
    poor = make_user("poor@example.com", credit_micros=550)
    sign_in(client, poor.email)
    text = grid_price(client, **GRID)
    assert 'data-grid-total="600"' in text and "Not enough credit" in text


def test_running_a_grid_makes_six_runs_and_opens_its_page(app, signed_in, user):
    response = signed_in.post("/playground/runs", data=GRID, headers=HTMX)
    assert response.status_code == 200, response.text
    batch = batch_of(app)
    assert response.headers["HX-Redirect"] == f"/grids/{batch.id}"
    assert run_count(app) == 6 and balance_of(app, user.id) == 1_000_000 - 600
    assert batch.axes["x"]["values"] == ["1", "2", "3"]
    page = signed_in.get(f"/grids/{batch.id}").text
    assert page.count("<article id=\"run-") == 6 and page.count("data-use-settings") == 6
    assert re.search(r'<th scope="row" class="grid-row-head"><span class="visually-hidden">Outcome: </span>'
                     r'<span class="grid-head-value">fail</span>', page)
    with app.app_context():
        first = db.session.query(Run).filter_by(batch_row=0, batch_col=0).one()
    assert f'href="/playground?from={first.id}" data-use-settings' in page
    restored = signed_in.get(f"/playground?from={first.id}").text
    assert 'value="local/test"' in restored and 'value="1"' in restored


def test_plain_post_redirects_to_the_grid_page(app, signed_in):
    response = signed_in.post("/playground/runs", data=GRID)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/grids/{batch_of(app).id}"


def test_a_grid_short_of_balance_makes_nothing_and_says_so_by_the_controls(app, client, make_user):
    poor = make_user("poor@example.com", credit_micros=550)
    sign_in(client, poor.email)
    response = client.post("/playground/runs", data=GRID, headers=HTMX)
    assert response.status_code == 422 and '<form id="run-form"' in response.text
    assert re.search(r'id="grid-error"[^>]*>Your balance is too low for these 6 runs, which cost '
                     r'\$0.0006 together. Nothing was run.</p>', response.text)
    assert 'name="grid" value="1" checked' in response.text
    assert run_count(app) == 0 and balance_of(app, poor.id) == 550


def test_axis_errors_and_the_cap_are_shown_by_the_grid_controls(app, signed_in):
    response = signed_in.post("/playground/runs", headers=HTMX,
                              data={**GRID, "grid_x_values": "1, two"})
    assert response.status_code == 422
    assert '<p class="field-error" id="grid-x-error">“two” is not a seed' in html.unescape(response.text)
    response = signed_in.post("/playground/runs", headers=HTMX,
                              data={**GRID, "grid_x_values": "19 random"})
    assert response.status_code == 422 and "this one would make 38" in response.text
    response = signed_in.post("/playground/runs", headers=HTMX,
                              data={**GRID, "grid_x": "replace", "grid_x_word": "cats",
                                    "grid_x_values": "dogs"})
    assert "The prompt has no “cats” to replace." in html.unescape(response.text)
    assert run_count(app) == 0


def test_a_missing_prompt_is_shown_by_the_prompt_field(app, signed_in):
    response = signed_in.post("/playground/runs", headers=HTMX, data={**GRID, "prompt": ""})
    assert response.status_code == 422 and run_count(app) == 0
    assert 'id="f-prompt-error">is required' in response.text


def test_prompt_variants_and_replaced_words_make_one_run_each(app, signed_in):
    data = {"model": "local/test", "prompt": "a red fox", "grid": "1", "grid_x": "replace",
            "grid_x_word": "red", "grid_x_values": "blue\ngreen", "grid_y": "prompt",
            "grid_y_values": "a red fox\na red barn"}
    assert signed_in.post("/playground/runs", data=data, headers=HTMX).status_code == 200
    with app.app_context():
        made = db.session.query(Run).order_by(Run.batch_row, Run.batch_col).all()
        assert [run.input["prompt"] for run in made] == [
            "a blue fox", "a green fox", "a blue barn", "a green barn"]


def test_the_model_axis_runs_the_form_on_each_model(app, signed_in, user):
    data = {"model": "local/sketch", "prompt": "same prompt", "num_images": "2", "grid": "1",
            "grid_x": "model", "grid_x_pick": ["local/sketch", "local/test"]}
    assert signed_in.post("/playground/runs", data=data, headers=HTMX).status_code == 200
    with app.app_context():
        made = {run.model: run for run in db.session.query(Run)}
        assert made["local/sketch"].cost_micros == 2000 and made["local/test"].cost_micros == 100
        assert "num_images" not in made["local/test"].input
        assert made["local/sketch"].input["seed"] == made["local/test"].input["seed"]
    assert balance_of(app, user.id) == 1_000_000 - 2100


def test_grid_pages_are_the_owners_and_rerun_makes_a_new_grid(app, client, signed_in, make_user):
    signed_in.post("/playground/runs", data=GRID, headers=HTMX)
    batch = batch_of(app)
    response = signed_in.post(f"/grids/{batch.id}/rerun")
    assert response.status_code == 303 and response.headers["Location"] != f"/grids/{batch.id}"
    assert run_count(app) == 12
    other = app.test_client()
    sign_in(other, make_user("other@example.com").email)
    assert other.get(f"/grids/{batch.id}").status_code == 404
    assert other.post(f"/grids/{batch.id}/rerun").status_code == 404
    assert other.post(f"/grids/{batch.id}/share").status_code == 404
    assert run_count(app) == 12


def test_a_shared_grid_is_public_until_revoked(app, signed_in):
    signed_in.post("/playground/runs", data=GRID, headers=HTMX)
    batch = batch_of(app)
    with app.app_context():
        first = db.session.query(Run).filter_by(batch_row=0, batch_col=0).one()
        runs.mark_failed(db.session, db.session.query(Run).filter_by(batch_row=1, batch_col=0)
                         .one().id, message="boom", code="provider_error")
        db.session.commit()
    panel = signed_in.post(f"/grids/{batch.id}/share", data={"hide_prompt": "1"}, headers=HTMX).text
    link = re.search(r'data-copy="(http://localhost/g/[^"]+)"', panel).group(1)
    path = link.removeprefix("http://localhost")
    anonymous = app.test_client()
    public = anonymous.get(path)
    assert public.status_code == 200 and public.headers["Referrer-Policy"] == "no-referrer"
    assert "a grid of tests" not in public.text and first.id not in public.text
    assert public.text.count("data-shared-cell") == 6 and "Failed: nothing to show." in public.text
    signed_in.post(f"/grids/{batch.id}/share/revoke", headers=HTMX)
    assert anonymous.get(path).status_code == 404


def test_the_gallery_lists_grids_as_tiles(app, signed_in):
    signed_in.post("/playground/runs", data=GRID, headers=HTMX)
    batch = batch_of(app)
    page = signed_in.get("/runs").text
    assert f'href="/grids/{batch.id}"' in page and "data-grid-tile" in page


# --- several models: the model axis (what "Multiple models" was) ----------------------------


def model_grid(**extra) -> dict:
    return {"model": "local/sketch", "prompt": "same prompt, two models", "grid": "1",
            "grid_x": "model", "grid_x_pick": ["local/sketch", "local/test"], **extra}


def test_the_model_axis_offers_available_models_of_the_forms_kind(app, client):
    def offered():
        text = client.post("/playground/grid/axes/x", headers=HTMX, data={
            "model": "local/sketch", "grid": "1", "grid_x": "model"}).text
        return re.findall(r'name="grid_x_pick" value="([^"]+)"', text)
    assert offered() == ["local/sketch", "local/test"]
    app.config["PROVIDER_ENV"] = {"GEMINI_API_KEY": "test"}
    assert "google/nano-banana" in offered() and "google/veo-3" not in offered()


def test_model_axis_price_sums_each_models_price_for_the_shared_form(client):
    text = grid_price(client, **model_grid(num_images="3"))
    assert 'data-grid-runs="2"' in text and 'data-grid-total="3100"' in text and "$0.0031" in text


def test_model_axis_price_names_a_model_whose_share_of_the_form_is_invalid(app, client):
    app.config["PROVIDER_ENV"] = {"GEMINI_API_KEY": "test"}
    text = grid_price(client, **model_grid(model="google/nano-banana", aspect_ratio="auto",
                                           grid_x_pick=["google/nano-banana", "local/sketch"]))
    assert "local/sketch: Aspect ratio must be one of" in text and "data-grid-total" not in text


def test_model_axis_ignores_models_it_does_not_offer(client):
    text = grid_price(client, **model_grid(grid_x_pick=["local/sketch-video", "nope/nothing"]))
    assert "Columns: Pick at least one model." in text


def test_model_axis_is_all_or_nothing_when_the_balance_is_short(app, client, make_user):
    poor = make_user("poor@example.com", credit_micros=2500)
    sign_in(client, poor.email)
    response = client.post("/playground/runs", data=model_grid(num_images="4"), headers=HTMX)
    assert response.status_code == 422 and '<form id="run-form"' in response.text
    assert ("Your balance is too low for these 2 runs, which cost $0.0041 together. "
            "Nothing was run.") in response.text
    assert run_count(app) == 0 and balance_of(app, poor.id) == 2500


def test_model_axis_names_the_cell_whose_input_is_invalid_and_creates_nothing(app, signed_in, user):
    app.config["PROVIDER_ENV"] = {"GEMINI_API_KEY": "test"}
    data = model_grid(model="google/nano-banana", aspect_ratio="auto",
                      grid_x_pick=["google/nano-banana", "local/sketch"])
    response = signed_in.post("/playground/runs", data=data, headers=HTMX)
    assert response.status_code == 422
    text = html.unescape(response.text)
    assert re.search(r'id="grid-error"[^>]*>Nothing was run. Model local/sketch: .*must be one of: 1:1', text)
    assert run_count(app) == 0 and balance_of(app, user.id) == 1_000_000


def test_shared_grid_files_are_served_through_the_link_without_the_hidden_prompt(app, signed_in, worker):
    signed_in.post("/playground/runs", data=GRID, headers=HTMX)
    batch = batch_of(app)
    with app.app_context():
        ids = [run.id for run in db.session.query(Run)]
    for run_id in ids:
        wait_for_run(app, run_id)
    panel = signed_in.post(f"/grids/{batch.id}/share", data={"hide_prompt": "1"}, headers=HTMX).text
    token = re.search(r"/g/([\w-]+)", panel).group(1)
    anonymous = app.test_client()
    image = anonymous.get(f"/g/{token}/cells/0/1/outputs/0")
    assert image.status_code == 200 and image.mimetype == "image/png"
    carried = read_png_recipe(image.data)
    assert carried["model"] == "local/test" and "prompt" not in carried["input"]
    assert carried["input"]["seed"] == 2 and carried["run"].endswith(f"/g/{token}")
    assert anonymous.get(f"/g/{token}/cells/1/0/outputs/0").status_code == 404  # failed cell
    assert anonymous.get(f"/g/{token}/cells/5/5/outputs/0").status_code == 404
    assert anonymous.get(f"/g/{token}x/cells/0/0/outputs/0").status_code == 404


def test_a_visitors_grid_is_kept_through_sign_up(app, client):
    response = client.post("/playground/runs", data=GRID)
    assert response.status_code == 303 and "/auth/signup" in response.headers["Location"]
    client.post("/auth/signup", data={"email": "new@example.com", "password": "password123"})
    page = html.unescape(client.get("/playground?model=local/test&draft=1").text)
    assert 'name="grid" value="1" checked' in page
    assert '<option value="seed" selected>' in page and ">1, 2, 3</textarea>" in page
    assert 'name="grid_y_pick" value="fail" checked' in page
    assert run_count(app) == 0


def test_a_model_page_offers_no_grid(client):
    page = client.get("/models/local/sketch").text
    assert 'id="run-form"' in page and 'name="grid"' not in page


def test_a_model_axis_needs_the_other_axis_to_change_what_every_model_has(client):
    text = grid_price(client, **model_grid(grid_y="f:num_images", grid_y_values="1, 2"))
    assert "Rows: local/test has no Number of images: pick models that all have it." in text
    text = grid_price(client, **model_grid(grid_y="seed", grid_y_values="1, 2"))
    assert 'data-grid-runs="4"' in text
