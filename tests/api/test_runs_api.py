"""The runs API contract: the quickstart flow and every error code."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from runbase_web.extensions import db
from runbase_web.models import User
from runbase_web.services import keys as key_service
from tests.conftest import wait_for_run

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SKETCH = {"model": "local/sketch", "input": {"prompt": "A cozy bookshop, watercolor style"}}


def error_of(response) -> tuple[int, str]:
    """(status, code) of an error response, checking the envelope's shape."""
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "code"}, body
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


def balance_of(app, user) -> int:
    with app.app_context():
        return db.session.get(User, user.id).balance_micros


def test_quickstart_flow(app, client, auth, user, worker):
    created = client.post("/api/v1/runs", json=SKETCH, headers=auth)
    assert created.status_code == 201
    run = created.get_json()
    assert run["id"].startswith("run_") and run["status"] == "pending"
    assert run["model"] == "local/sketch"
    assert isinstance(run["costUsd"], int) and run["costUsd"] == 1000
    assert created.headers["Location"] == f"/api/v1/runs/{run['id']}"
    assert ISO_MS.match(run["createdAt"]) and run["output"] is None and run["error"] is None

    wait_for_run(app, run["id"])
    done = client.get(f"/api/v1/runs/{run['id']}", headers=auth).get_json()
    assert done["status"] == "succeeded", done
    assert done["input"]["aspect_ratio"] == "1:1" and isinstance(done["input"]["seed"], int)
    assert ISO_MS.match(done["startedAt"]) and ISO_MS.match(done["completedAt"])
    (url,) = done["output"]["urls"]
    assert re.match(r"^http://localhost/files/generated/[A-Za-z0-9_-]{20,}\.png$", url)

    with client.get(url.removeprefix("http://localhost")) as download:
        assert download.status_code == 200 and download.mimetype == "image/png"
        image = Image.open(io.BytesIO(download.data))
    image.verify()
    assert image.size == (512, 512)
    assert balance_of(app, user) == 1_000_000 - 1000


def test_public_url_setting_builds_output_urls(app, client, auth, worker):
    app.config["PUBLIC_URL"] = "https://runbase.example.org"
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    wait_for_run(app, run_id)
    urls = client.get(f"/api/v1/runs/{run_id}", headers=auth).get_json()["output"]["urls"]
    assert urls[0].startswith("https://runbase.example.org/files/generated/")


@pytest.mark.parametrize("body, expected", [
    (b"{not json", (400, "invalid_json")),
    (b"[1, 2]", (400, "invalid_json")),
    (b'{"input": {"prompt": "x"}}', (400, "missing_model")),
    (b'{"model": 5, "input": {"prompt": "x"}}', (400, "missing_model")),
    (b'{"model": "local/sketch"}', (400, "missing_input")),
    (b'{"model": "local/sketch", "input": "a cat"}', (400, "missing_input")),
    (b'{"model": "nobody/nothing", "input": {"prompt": "x"}}', (400, "model_not_found")),
    (b'{"model": "local/sketch", "input": {}}', (400, "invalid_input")),
])
def test_create_errors(client, auth, body, expected):
    response = client.post("/api/v1/runs", data=body, headers=auth,
                           content_type="application/json")
    assert error_of(response) == expected


@pytest.mark.parametrize("input_, field", [
    ({}, "prompt"),
    ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio"),
    ({"prompt": "x", "num_images": 9}, "num_images"),
    ({"prompt": "x", "num_images": True}, "num_images"),
    ({"prompt": "x", "colour": "red"}, "colour"),
])
def test_invalid_input_names_the_field(client, auth, input_, field):
    response = client.post("/api/v1/runs", json={"model": "local/sketch", "input": input_},
                           headers=auth)
    assert error_of(response) == (400, "invalid_input")
    assert field in response.get_json()["error"]["message"]


def test_unconfigured_provider_says_which_variable(client, auth):
    response = client.post("/api/v1/runs", headers=auth, json={
        "model": "openai/gpt-image-2", "input": {"prompt": "x"}})
    assert error_of(response) == (400, "model_not_found")
    assert "OPENAI_API_KEY" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("header", [None, "sk-abc", "Token sk-abcdefghijklmnopqrstuvwxyz",
                                    "Bearer abcdefghijklmnopqrstuvwxyz", "Bearer "])
def test_missing_api_key(client, header):
    headers = {"Authorization": header} if header is not None else {}
    assert error_of(client.post("/api/v1/runs", json=SKETCH, headers=headers)) == (401, "missing_api_key")
    assert error_of(client.get("/api/v1/runs/run_x", headers=headers)) == (401, "missing_api_key")


def test_invalid_api_key_unknown_disabled_deleted(app, client, user, make_key):
    unknown = {"Authorization": "Bearer sk-" + "x" * 43}
    assert error_of(client.get("/api/v1/runs/run_x", headers=unknown)) == (401, "invalid_api_key")
    disabled, deleted = make_key(user), make_key(user)
    with app.app_context():
        key_service.find_active_key(db.session, disabled).disabled = True
        key_id = key_service.find_active_key(db.session, deleted).id
        assert key_service.delete_key(db.session, user.id, key_id)
        db.session.commit()
    for full_key in (disabled, deleted):
        response = client.post("/api/v1/runs", json=SKETCH, headers={"Authorization": f"Bearer {full_key}"})
        assert error_of(response) == (401, "invalid_api_key")


def test_session_cookie_is_not_accepted(client, user):
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    assert error_of(client.get("/api/v1/runs/run_x")) == (401, "missing_api_key")


def test_insufficient_balance_charges_nothing(app, client, make_user, make_key):
    poor = make_user("poor@example.com", credit_micros=999)
    headers = {"Authorization": f"Bearer {make_key(poor)}"}
    response = client.post("/api/v1/runs", json=SKETCH, headers=headers)
    assert error_of(response) == (402, "insufficient_balance")
    assert balance_of(app, poor) == 999


def test_price_follows_input(client, auth):
    body = {"model": "local/sketch", "input": {"prompt": "x", "num_images": 3}}
    assert client.post("/api/v1/runs", json=body, headers=auth).get_json()["costUsd"] == 3000


def test_other_accounts_run_is_not_found(client, auth, make_user, make_key):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    stranger = {"Authorization": f"Bearer {make_key(make_user('eve@example.com'))}"}
    assert error_of(client.get(f"/api/v1/runs/{run_id}", headers=stranger)) == (404, "run_not_found")
    assert error_of(client.get("/api/v1/runs/run_doesnotexist", headers=stranger)) == (404, "run_not_found")


def test_any_key_of_the_owner_reads_the_run(client, auth, user, make_key):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    other_key = {"Authorization": f"Bearer {make_key(user, 'second')}"}
    assert client.get(f"/api/v1/runs/{run_id}", headers=other_key).status_code == 200


def test_unknown_route_and_method_use_the_envelope(client, auth):
    assert error_of(client.get("/api/v1/nothing-here", headers=auth)) == (404, "not_found")
    assert error_of(client.delete("/api/v1/runs/run_x", headers=auth)) == (405, "method_not_allowed")


def test_oversized_body_is_413(client, auth):
    body = {"model": "local/sketch", "input": {"prompt": "x" * (2 * 1024 * 1024)}}
    assert error_of(client.post("/api/v1/runs", json=body, headers=auth))[0] == 413


def test_unexpected_error_is_500_without_trace(client, auth, monkeypatch):
    from runbase_web.services import runs

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(runs, "get_public_run", explode)
    response = client.get("/api/v1/runs/run_x", headers=auth)
    assert error_of(response) == (500, "internal_error")
    message = response.get_json()["error"]["message"]
    assert "request id" in message and "secret internals" not in message and "Traceback" not in message


def test_api_responses_are_json_without_html_headers(client, auth):
    response = client.get("/api/v1/runs/run_x", headers=auth)
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
