"""Sign up, sign in, sign out, `next` handling and CSRF on the auth forms."""
from __future__ import annotations

import re

import pytest

from runbase_web.auth.redirects import safe_next
from runbase_web.extensions import db
from runbase_web.services import accounts
from tests.web import HTMX, PASSWORD, balance_of, field_error, sign_in

UNSAFE_NEXT = ["//evil.example/x", "https://evil.example/", "http:/evil.example",
               "/\\evil.example", "javascript:alert(1)", "evil.example/path", "",
               "/ok\r\nSet-Cookie: x=1", "\\\\evil.example"]


def test_signup_grants_credit_and_signs_in(app, client):
    response = client.post("/auth/signup", data={"email": " New@Example.com ", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/playground"
    with app.app_context():
        user = accounts.find_user(db.session, "new@example.com")
        user_id = user.id
    assert balance_of(app, user_id) == app.config["SIGNUP_CREDIT_MICROS"] == 1_000_000
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "new@example.com" in page.text and "$1.00" in page.text


@pytest.mark.parametrize(("email", "password", "field", "message"), [
    ("not-an-email", PASSWORD, "email", "Enter a valid email address."),
    ("ok@example.com", "short", "password", "Use at least 8 characters."),
])
def test_signup_errors_next_to_field(client, email, password, field, message):
    response = client.post("/auth/signup", data={"email": email, "password": password})
    assert response.status_code == 422
    assert field_error(response.text, field) == message
    assert f'value="{email}"' in response.text  # the typed email is kept


def test_signup_with_taken_email(client, user):
    response = client.post("/auth/signup", data={"email": "ALICE@example.com", "password": PASSWORD})
    assert response.status_code == 422
    assert field_error(response.text, "email") == "An account with this email already exists."


def test_login_and_logout(client, user):
    assert client.get("/dashboard").status_code == 302
    response = sign_in(client, "alice@example.com")
    assert response.headers["Location"] == "/dashboard"
    assert client.get("/dashboard").status_code == 200
    logout = client.post("/auth/logout")
    assert logout.status_code == 302
    assert client.get("/dashboard").headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize("email", ["alice@example.com", "nobody@example.com"])
def test_bad_login_shows_error_next_to_password(client, user, email):
    response = client.post("/auth/login", data={"email": email, "password": "wrong-password"})
    assert response.status_code == 422
    assert field_error(response.text, "password") == "Email or password is incorrect."
    assert field_error(response.text, "email") is None
    assert client.get("/dashboard").status_code == 302


def test_login_follows_safe_next(client, user):
    target = "/playground?model=local/sketch"
    form = client.get("/auth/login", query_string={"next": target})
    assert 'name="next" value="/playground?model=local/sketch"' in form.text
    response = client.post("/auth/login", data={"email": "alice@example.com",
                                                "password": PASSWORD, "next": target})
    assert response.headers["Location"] == target


@pytest.mark.parametrize("unsafe", UNSAFE_NEXT)
def test_unsafe_next_is_ignored(client, user, unsafe):
    form = client.get("/auth/login", query_string={"next": unsafe})
    assert 'name="next"' not in form.text
    response = client.post("/auth/login", data={"email": "alice@example.com",
                                                "password": PASSWORD, "next": unsafe})
    assert response.headers["Location"] == "/dashboard"


@pytest.mark.parametrize("unsafe", UNSAFE_NEXT)
def test_safe_next_rules(unsafe):
    assert safe_next(unsafe) is None
    assert safe_next("/playground?model=local/sketch") == "/playground?model=local/sketch"


def test_signup_returns_to_next(client):
    response = client.post("/auth/signup", data={"email": "b@example.com", "password": PASSWORD,
                                                 "next": "/playground?model=local/test"})
    assert response.headers["Location"] == "/playground?model=local/test"


@pytest.mark.parametrize("url", ["/dashboard", "/settings/keys"])
def test_pages_need_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/auth/login?next={url}"


@pytest.mark.parametrize("url", ["/dashboard", "/settings/keys"])
def test_htmx_requests_get_hx_redirect_not_302(client, url):
    response = client.get(url, headers={**HTMX, "HX-Current-URL": "http://localhost/dashboard"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/auth/login?next=/dashboard"


def test_hx_current_url_from_another_host_is_not_used(client):
    response = client.get("/dashboard", headers={**HTMX, "HX-Current-URL": "http://evil.example/x"})
    assert response.headers["HX-Redirect"] == "/auth/login"


def test_signed_in_visitor_skips_the_forms(client, user):
    sign_in(client, "alice@example.com")
    assert client.get("/auth/login").headers["Location"] == "/dashboard"
    assert client.get("/auth/signup").headers["Location"] == "/playground"


def test_logout_is_post_only(client, user):
    sign_in(client, "alice@example.com")
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/dashboard").status_code == 200


class TestWithCsrf:
    """The same forms with CSRF protection on, as in production."""

    @pytest.fixture
    def app_config(self):
        return {"WTF_CSRF_ENABLED": True}

    @staticmethod
    def token(client, url: str = "/auth/signup") -> str:
        page = client.get(url).text
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def test_signup_without_token_is_refused(self, client):
        response = client.post("/auth/signup", data={"email": "c@example.com", "password": PASSWORD})
        assert response.status_code == 400

    def test_signup_with_token(self, client):
        data = {"email": "c@example.com", "password": PASSWORD, "csrf_token": self.token(client)}
        assert client.post("/auth/signup", data=data).status_code == 302

    def test_htmx_header_token_is_accepted(self, client, user):
        sign_in_data = {"email": "alice@example.com", "password": PASSWORD,
                        "csrf_token": self.token(client, "/auth/login")}
        assert client.post("/auth/login", data=sign_in_data).status_code == 302
        page = client.get("/playground").text
        header = re.search(r'<body hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'>', page).group(1)
        data = {"model": "local/sketch", "prompt": "a red fox"}
        assert client.post("/playground/runs", data=data, headers=HTMX).status_code == 400
        created = client.post("/playground/runs", data=data, headers={**HTMX, "X-CSRFToken": header})
        assert created.status_code == 201
