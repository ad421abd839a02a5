"""Inputs that used to crash (500) or poison pages: each gets the documented 400 envelope,
charges nothing, and leaves every page working. Stored text from before the checks (a
lone surrogate in a run's input) still renders everywhere and still runs."""
from __future__ import annotations


import pytest
from sqlalchemy import text

from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.services import run_creation
from runbase_web import state
from tests.conftest import wait_for_run
from tests.web import balance_of, sign_in

RUNS = "/api/v1/runs"
JSON = {"Content-Type": "application/json"}


def post_raw(client, auth, body: str, **headers):
    return client.post(RUNS, data=body.encode("utf-8", "surrogatepass"),
                       headers={**auth, **JSON, **headers})


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def assert_refused(response, code: str):
    assert response.status_code == 400, response.data
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]


@pytest.mark.parametrize("depth", [40, 600, 3000, 100_000])
def test_deeply_nested_input_is_invalid_json(client, auth, user, app, depth):
    body = '{"model": "local/sketch", "input": {"prompt": "x", "extra": %s}}' % nested(depth)
    response = post_raw(client, auth, body)
    assert_refused(response, "invalid_json")
    assert "nested at most 32 levels" in response.get_json()["error"]["message"]
    assert balance_of(app, user.id) == 1_000_000


def test_nesting_within_the_limit_reaches_the_schema(client, auth):
    body = '{"model": "local/sketch", "input": {"prompt": "x", "extra": %s}}' % nested(20)
    assert_refused(post_raw(client, auth, body), "invalid_input")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_invalid_json(client, auth, app, user, literal):
    body = '{"model": "local/sketch", "input": {"prompt": "x", "seed": %s}}' % literal
    assert_refused(post_raw(client, auth, body), "invalid_json")
    assert balance_of(app, user.id) == 1_000_000


def test_huge_integer_is_refused_cleanly(client, auth):
    body = '{"model": "local/sketch", "input": {"prompt": "x", "seed": %s}}' % ("9" * 5000)
    assert post_raw(client, auth, body).status_code == 400


@pytest.mark.parametrize("url", ["https://a.example/\\u0000", "https://a.example/\\u0007x",
                                 "https://a.example/a b", "https://a.example/\\u007f"])
def test_control_characters_in_webhook_urls_are_invalid_input(client, auth, app, user, url):
    body = '{"model": "local/sketch", "input": {"prompt": "x"}, "webhook": "%s"}' % url
    assert_refused(post_raw(client, auth, body), "invalid_input")
    assert balance_of(app, user.id) == 1_000_000


@pytest.mark.parametrize("where", ["webhook", "prompt", "key"])
@pytest.mark.parametrize("idempotent", [False, True])
def test_lone_surrogates_are_invalid_json(client, auth, app, user, where, idempotent):
    lone = "a\\ud800b" if where != "webhook" else "https://a.example/\\udc80"
    body = {"webhook": '{"model": "local/sketch", "input": {"prompt": "x"}, "webhook": "%s"}' % lone,
            "prompt": '{"model": "local/sketch", "input": {"prompt": "%s"}}' % lone,
            "key": '{"model": "local/sketch", "input": {"prompt": "x", "%s": 1}}' % lone}[where]
    headers = {"Idempotency-Key": "fuzz-1"} if idempotent else {}
    assert_refused(post_raw(client, auth, body, **headers), "invalid_json")
    assert balance_of(app, user.id) == 1_000_000
    # The account's pages still work.
    sign_in(client, user.email)
    for page in ("/runs", "/dashboard", "/playground"):
        assert client.get(page).status_code == 200, page


def test_nul_in_the_prompt_is_invalid_input(client, auth, app, user):
    body = '{"model": "local/sketch", "input": {"prompt": "a\\u0000b"}}'
    assert_refused(post_raw(client, auth, body), "invalid_input")
    assert balance_of(app, user.id) == 1_000_000


def test_a_valid_surrogate_pair_is_ordinary_text(client, auth):
    body = '{"model": "local/sketch", "input": {"prompt": "a \\ud83c\\udf0a wave"}}'
    created = post_raw(client, auth, body)
    assert created.status_code == 201
    assert created.get_json()["input"]["prompt"] == "a \U0001F30A wave"


def test_service_refuses_unstorable_text_from_any_caller(app, user):
    with app.app_context():
        with pytest.raises(run_creation.InvalidInput):
            run_creation.create_run(db.session, catalog=state.catalog(), provider_env={},
                                    user_id=user.id, api_key_id=None, model_id="local/sketch",
                                    raw_input={"prompt": "a\ud800"}, source="playground")
        db.session.rollback()


def test_playground_recipe_with_a_lone_surrogate_restores_nothing(client, user):
    sign_in(client, user.email)
    recipe = '{"model": "local/sketch", "input": {"prompt": "\\udc80"}}'
    assert client.post("/playground/restore", data={"recipe": recipe}).status_code == 400


# --- text stored before the boundary checked it --------------------------------------------


def _store_legacy_run(client, auth, app) -> str:
    """A paid run whose stored input holds a lone surrogate, as the old code could write it."""
    run_id = post_raw(client, auth, '{"model": "local/sketch", "input": {"prompt": "ab"}}').get_json()["id"]
    with app.app_context():
        raw = db.session.execute(text("SELECT input FROM runs WHERE id = :id"), {"id": run_id}).scalar_one()
        raw = raw.replace('"ab"', '"a\\ud800b"')
        db.session.execute(text("UPDATE runs SET input = :raw WHERE id = :id"), {"raw": raw, "id": run_id})
        db.session.commit()
    return run_id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pages_and_worker_survive_a_stored_lone_surrogate(app, client, auth, user, request):
    # SQLite only: PostgreSQL's JSON types refuse the escape, so it cannot hold such a row.
    run_id = _store_legacy_run(client, auth, app)
    request.getfixturevalue("worker")
    run = wait_for_run(app, run_id)
    assert run.status == "succeeded", run.error
    assert run.input["prompt"] == "a\ufffdb"
    assert client.get(f"{RUNS}/{run_id}", headers=auth).status_code == 200
    assert client.get(RUNS, headers=auth).status_code == 200
    sign_in(client, user.email)
    for page in ("/runs", "/dashboard", f"/runs/{run_id}", f"/playground?from={run_id}", "/runs?q=a"):
        response = client.get(page)
        assert response.status_code == 200, page
    shared = client.post(f"/runs/{run_id}/share", data={})
    assert shared.status_code in (200, 303)
    with app.app_context():
        token = db.session.get(Run, run_id).share_token
    assert client.get(f"/s/{token}").status_code == 200
    assert client.get(f"/s/{token}/outputs/0").status_code == 200


# --- found by the fuzzer (test_fuzz_create.py) ----------------------------------------------


@pytest.mark.parametrize("url", ["http://[", "https://[::1", "https://[abc]/", "http://]x"])
def test_unparseable_webhook_host_is_invalid_input(client, auth, app, user, url):
    # urlsplit raises ValueError on an unbalanced or invalid [IPv6] host: it was a 500.
    body = '{"model": "local/sketch", "input": {"prompt": "x"}, "webhook": "%s"}' % url
    assert_refused(post_raw(client, auth, body), "invalid_input")
    assert balance_of(app, user.id) == 1_000_000


@pytest.mark.parametrize("key", ["a\x00b", "\x00"])
def test_nul_in_the_idempotency_key_is_refused(client, auth, app, user, key):
    # PostgreSQL cannot compare text holding NUL: looking the key up was a 500 there.
    body = '{"model": "local/sketch", "input": {"prompt": "x"}}'
    assert_refused(post_raw(client, auth, body, **{"Idempotency-Key": key}), "invalid_idempotency_key")
    assert balance_of(app, user.id) == 1_000_000


def test_a_page_with_a_stray_surrogate_is_sent_with_a_replacement_character(app):
    # The last guard for text that reaches a page from anywhere else than a run's input.
    response = app.response_class("<p>a\ud800b</p>", mimetype="text/html")
    assert response.get_data() == "<p>a\ufffdb</p>".encode("utf-8")
    assert app.response_class("plain é").get_data() == "plain é".encode("utf-8")
