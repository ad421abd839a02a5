"""S10: bodies over MAX_CONTENT_LENGTH are refused with 413: the API's JSON error
envelope under /api/v1, an HTML error page on the web, also for a chunked body with no
Content-Length sent through the real server."""
from __future__ import annotations

import pytest
import requests

from tests.web import sign_in

LIMIT = 4096


@pytest.fixture
def app_config():
    return {"MAX_CONTENT_LENGTH": LIMIT}


def big_prompt() -> str:
    return "x" * (LIMIT * 2)


def test_api_answers_the_envelope(client, auth):
    response = client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": big_prompt()}},
                           headers=auth)
    assert response.status_code == 413
    assert response.get_json() == {"error": {"message": "The request body is too large.",
                                             "code": response.get_json()["error"]["code"]}}
    assert response.get_json()["error"]["code"]


def test_body_just_under_the_limit_is_read(client, auth):
    response = client.post("/api/v1/runs", json={"model": "local/sketch",
                                                 "input": {"prompt": "x" * (LIMIT - 200)}},
                           headers=auth)
    assert response.status_code != 413


@pytest.mark.parametrize("url", ["/auth/login", "/auth/signup", "/playground/runs", "/settings/keys"])
def test_web_answers_an_html_page(client, user, url):
    if url not in ("/auth/login", "/auth/signup"):
        sign_in(client, user.email)
    response = client.post(url, data={"prompt": big_prompt(), "name": "n", "email": "a@example.com"})
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert '<p class="error-code">413</p>' in response.text


def test_web_with_csrf_on_still_answers_413(app, client):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post("/auth/login", data={"email": "a@example.com", "password": big_prompt()})
    assert response.status_code == 413 and response.mimetype == "text/html"


def _chunks(total: int):
    sent = 0
    while sent < total:
        yield b"x" * 1024
        sent += 1024


def test_chunked_bodies_through_the_real_server(http_server, api_key):
    api = requests.post(f"{http_server}/api/v1/runs", data=_chunks(LIMIT * 4), timeout=10,
                        headers={"Authorization": f"Bearer {api_key}",
                                 "Content-Type": "application/json"})
    assert "Content-Length" not in api.request.headers
    assert api.status_code == 413
    assert api.json()["error"]["message"] == "The request body is too large."
    web = requests.post(f"{http_server}/auth/login", data=_chunks(LIMIT * 4), timeout=10,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert web.status_code == 413 and "text/html" in web.headers["Content-Type"]


def test_chunked_bodies_under_the_limit_are_read_whole(http_server, api_key, user):
    body = b'{"model": "local/sketch", "input": {"prompt": "' + b"y" * (LIMIT - 100) + b'"}}'
    api = requests.post(f"{http_server}/api/v1/runs", timeout=10,
                        data=iter([body[:1000], body[1000:2500], body[2500:]]),
                        headers={"Authorization": f"Bearer {api_key}",
                                 "Content-Type": "application/json"})
    assert "Content-Length" not in api.request.headers
    assert api.status_code == 201, api.text
    assert api.json()["input"]["prompt"] == "y" * (LIMIT - 100)
    form = f"email={user.email}&password=password123".encode()
    web = requests.post(f"{http_server}/auth/login", data=iter([form[:5], form[5:]]), timeout=10,
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                        allow_redirects=False)
    assert web.status_code == 302
