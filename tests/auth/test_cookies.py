"""Cookies and sessions: flags on the session and remember-me
cookies for http and https deployments, and a fresh session on every sign-in."""
from __future__ import annotations

import re

import pytest

from tests.web import PASSWORD


def set_cookies(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() + ("=" + part.split("=")[1].strip().lower()
                                                  if part.strip().lower().startswith("samesite") else "")
            for part in header.split(";")[1:]}


def sign_in(client, remember: bool):
    data = {"email": "alice@example.com", "password": PASSWORD}
    if remember:
        data["remember"] = "1"
    response = client.post("/auth/login", data=data)
    assert response.status_code == 302
    return set_cookies(response)


@pytest.mark.parametrize("public_url, secure", [("http://runbase.test", False),
                                                ("https://runbase.example", True)])
class TestCookieFlags:
    @pytest.fixture
    def app_config(self, public_url):
        return {"PUBLIC_URL": public_url}

    def test_with_remember_me(self, client, user, public_url, secure):
        cookies = sign_in(client, remember=True)
        assert set(cookies) == {"session", "remember_token"}
        for header in cookies.values():
            flags = attributes(header)
            assert {"httponly", "samesite=lax"} <= flags, header
            assert ("secure" in flags) is secure, header

    def test_without_remember_me(self, client, user, public_url, secure):
        cookies = sign_in(client, remember=False)
        assert set(cookies) == {"session"}
        flags = attributes(cookies["session"])
        assert {"httponly", "samesite=lax"} <= flags
        assert ("secure" in flags) is secure


def test_remember_me_checkbox_on_the_form(client):
    page = client.get("/auth/login").text
    assert re.search(r'<input id="f-remember" name="remember" type="checkbox" value="1"', page)
    assert '<label class="check" for="f-remember">' in page


def test_remember_cookie_restores_the_session(client, user):
    sign_in(client, remember=True)
    client.delete_cookie("session")
    assert client.get("/dashboard").status_code == 200
    client.post("/auth/logout")
    assert client.get("/dashboard").status_code == 302


def test_without_remember_losing_the_session_signs_out(client, user):
    sign_in(client, remember=False)
    client.delete_cookie("session")
    assert client.get("/dashboard").status_code == 302


@pytest.mark.parametrize("path, data", [
    ("/auth/login", {"email": "alice@example.com", "password": PASSWORD, "next": "/settings/keys"}),
    ("/auth/signup", {"email": "new@example.com", "password": PASSWORD, "next": "/settings/keys"}),
])
def test_sign_in_starts_a_fresh_session(client, user, path, data):
    """Session fixation: nothing planted in the session before sign-in survives it."""
    with client.session_transaction() as session:
        session["planted"] = "attacker value"
        session["csrf_token"] = "planted-token"
    response = client.post(path, data=data)
    assert response.status_code == 302 and response.headers["Location"] == "/settings/keys"
    with client.session_transaction() as session:
        assert "planted" not in session and session.get("csrf_token") != "planted-token"
        assert session.get("_user_id")


def test_a_rotated_secret_key_takes_effect_at_once(app, client, user):
    """The session signer is built once per set of keys (cookie_session.py), so a key
    rotated in the config must still be picked up: a cookie signed with the old key
    keeps working while it is listed as a fallback, and stops working when it isn't."""
    sign_in(client, remember=False)
    assert client.get("/settings/keys").status_code == 200
    old = app.secret_key
    app.config.update(SECRET_KEY="a-new-secret-key-for-this-test", SECRET_KEY_FALLBACKS=[old])
    assert client.get("/settings/keys").status_code == 200
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get("/settings/keys").status_code == 302  # to the sign-in page


def test_api_answers_neither_set_nor_vary_on_cookies(client, auth):
    response = client.get("/api/v1/runs", headers=auth)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
