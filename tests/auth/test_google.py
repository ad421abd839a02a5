"""Continue with Google against a fake OpenID Connect provider on 127.0.0.1.

The test client plays the browser: it follows the app's redirect to the provider's
/authorize over real HTTP (requests), then brings the provider's redirect (code + state)
back to the app. The app itself talks to the provider (discovery, token, JWKS) through
Authlib, over real HTTP too.
"""
from __future__ import annotations

import html
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from sqlalchemy import select

from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, User
from runbase_web.services import accounts
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOIDC
from tests.web import PASSWORD, balance_of, field_error

GOOGLE_BUTTON = "Continue with Google"


@pytest.fixture
def provider():
    fake = FakeOIDC().start()
    yield fake
    fake.stop()


@pytest.fixture
def app_config(provider):
    return {"GOOGLE_CLIENT_ID": CLIENT_ID, "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "GOOGLE_DISCOVERY_URL": provider.discovery_url}


def start(client, next_path: str | None = None) -> str:
    """Press the button: the app's redirect to the provider's /authorize."""
    response = client.get("/auth/google", query_string={"next": next_path} if next_path else {})
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def authorize(authorize_url: str) -> str:
    """The provider's answer to the browser: the callback URL with code and state."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def callback(client, callback_url: str):
    """Bring the provider's redirect back to the app."""
    parts = urlsplit(callback_url)
    assert parts.path == "/auth/google/callback"
    return client.get(f"{parts.path}?{parts.query}")


def round_trip(client, next_path: str | None = None):
    """The whole flow; returns the app's answer to the callback."""
    return callback(client, authorize(start(client, next_path)))


def signed_in_email(client) -> str | None:
    page = client.get("/dashboard")
    if page.status_code != 200:
        return None
    return page.text.split('class="account-email" title="', 1)[1].split('"', 1)[0]


def users(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(select(User).order_by(User.id)))


def refusal_text(client, response) -> str:
    """Where a refused sign-in lands (the sign-in page) and the notice it shows."""
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")
    return html.unescape(client.get(response.headers["Location"]).text)


def test_button_on_both_forms_and_request_is_oidc_code_flow(client, provider):
    for url in ("/auth/login", "/auth/signup"):
        page = client.get(url, query_string={"next": "/playground"}).text
        assert GOOGLE_BUTTON in page
        assert 'href="/auth/google?next=/playground"' in page
    location = start(client)
    assert location.startswith(provider.url + "/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["redirect_uri"] == "http://localhost/auth/google/callback"
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    assert query["code_challenge_method"] == "S256"


def test_new_account_is_created_with_signup_credit(app, client, provider):
    response = round_trip(client)
    assert response.status_code == 302 and response.headers["Location"] == "/playground"
    [user] = users(app)
    assert (user.email, user.google_sub, user.password_hash) == ("person@gmail.com", "google-sub-1", None)
    assert balance_of(app, user.id) == app.config["SIGNUP_CREDIT_MICROS"]
    assert signed_in_email(client) == "person@gmail.com"
    # The provider saw a real code exchange with the PKCE verifier and the client secret.
    [token_call] = provider.state.calls_to("POST", "/token")
    assert token_call.form["code_verifier"] and token_call.form["grant_type"] == ["authorization_code"]


def test_google_only_account_cannot_sign_in_with_a_password(app, client, provider):
    round_trip(client)
    client.post("/auth/logout")
    for password in ("", PASSWORD, "None"):
        response = client.post("/auth/login", data={"email": "person@gmail.com", "password": password})
        assert response.status_code == 422
        assert field_error(response.text, "password") == "Email or password is incorrect."
    assert signed_in_email(client) is None


def test_second_sign_in_finds_the_account_by_subject(app, client, provider):
    round_trip(client)
    client.post("/auth/logout")
    provider.state.data["email"] = "renamed@gmail.com"  # the Google account changed address
    response = round_trip(client)
    assert response.headers["Location"] == "/dashboard"
    [user] = users(app)
    assert user.email == "person@gmail.com"
    with app.app_context():
        grants = db.session.scalars(select(LedgerEntry).where(LedgerEntry.user_id == user.id)).all()
    assert len(grants) == 1  # one signup credit, not one per sign-in


def test_existing_email_account_is_linked(app, client, provider, make_user):
    existing = make_user("Person@Gmail.com")
    response = round_trip(client, "/playground?model=local/sketch")
    assert response.headers["Location"] == "/playground?model=local/sketch"
    [user] = users(app)
    assert user.id == existing.id and user.google_sub == "google-sub-1"
    assert balance_of(app, user.id) == 1_000_000  # no second grant
    assert signed_in_email(client) == "person@gmail.com"
    client.post("/auth/logout")
    # The password still works after linking.
    assert client.post("/auth/login", data={"email": "person@gmail.com",
                                            "password": PASSWORD}).status_code == 302


def test_unverified_email_is_refused(app, client, provider, make_user):
    make_user("person@gmail.com")
    provider.state.data["email_verified"] = False
    page = refusal_text(client, round_trip(client))
    assert "Google has not verified the email address" in page
    [user] = users(app)
    assert user.google_sub is None  # not linked to the unverified identity
    assert signed_in_email(client) is None


def test_email_linked_to_another_google_account_is_refused(app, client, provider):
    round_trip(client)
    client.post("/auth/logout")
    provider.state.data["sub"] = "google-sub-2"
    page = refusal_text(client, round_trip(client))
    assert "linked to a different Google account" in page
    assert [u.google_sub for u in users(app)] == ["google-sub-1"]


def _with_state(url: str, state: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = state
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_wrong_state_is_refused(app, client, provider):
    callback_url = authorize(start(client))
    page = refusal_text(client, callback(client, _with_state(callback_url, "forged-state")))
    assert "Google sign-in didn't complete" in page
    assert users(app) == [] and signed_in_email(client) is None
    assert provider.state.calls_to("POST", "/token") == []  # the code was never redeemed


def test_callback_from_another_browser_is_refused(app, client, provider):
    """Login CSRF: an attacker's own code+state, fed to the victim's browser."""
    attacker = app.test_client()
    callback_url = authorize(start(attacker))
    response = callback(client, callback_url)
    refusal_text(client, response)
    assert users(app) == [] and signed_in_email(client) is None


def test_state_cannot_be_replayed(app, client, provider):
    callback_url = authorize(start(client))
    assert callback(client, callback_url).status_code == 302
    client.post("/auth/logout")
    refusal_text(client, callback(client, callback_url))
    assert signed_in_email(client) is None


@pytest.mark.parametrize("knob", [{"nonce": "not-the-nonce-we-sent"},
                                  {"sign_with_other_key": True},
                                  {"audience": "someone-else.apps.googleusercontent.com"}])
def test_untrustworthy_id_token_is_refused(app, client, provider, knob):
    provider.state.data.update(knob)
    page = refusal_text(client, round_trip(client))
    assert "Google sign-in didn't complete" in page
    assert users(app) == [] and signed_in_email(client) is None


def test_provider_error_answer_is_refused(app, client, provider):
    location = start(client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    response = client.get("/auth/google/callback", query_string={"error": "access_denied",
                                                                 "state": state})
    refusal_text(client, response)
    assert users(app) == []


@pytest.mark.parametrize("hostile", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_hostile_next_is_dropped(client, provider, hostile):
    response = round_trip(client, hostile)
    assert response.headers["Location"] == "/playground"


def test_session_is_fresh_after_google_sign_in(client, provider):
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    round_trip(client)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert not [key for key in session if key.startswith("_state_google")]
        assert session.get("_user_id")


def test_provider_down_is_a_clear_refusal(app, client, provider):
    provider.stop()
    response = client.get("/auth/google")
    page = refusal_text(client, response)
    assert "Google sign-in is unavailable right now" in page


class TestUnconfigured:
    @pytest.fixture
    def app_config(self):
        return {"GOOGLE_CLIENT_ID": None, "GOOGLE_CLIENT_SECRET": None}

    @pytest.mark.parametrize("url", ["/auth/login", "/auth/signup"])
    def test_button_hidden(self, client, url):
        page = client.get(url)
        assert page.status_code == 200 and GOOGLE_BUTTON not in page.text
        assert "/auth/google" not in page.text

    def test_routes_are_404(self, client):
        assert client.get("/auth/google").status_code == 404
        assert client.get("/auth/google/callback?code=x&state=y").status_code == 404

    def test_half_configured_is_unconfigured(self, app, client):
        app.config["GOOGLE_CLIENT_ID"] = CLIENT_ID
        assert GOOGLE_BUTTON not in client.get("/auth/login").text
