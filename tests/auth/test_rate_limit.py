"""Sign-in and sign-up attempt limits: per client IP and per account.

Client addresses are set per request through REMOTE_ADDR (environ_base), as the socket
would; X-Forwarded-For is not trusted without RUNBASE_TRUSTED_PROXIES.
"""
from __future__ import annotations

import re

import pytest

from tests.web import PASSWORD, field_error

LIMIT = 10
WINDOW = 60


@pytest.fixture
def app_config():
    return {"AUTH_RATE_LIMIT": (LIMIT, WINDOW)}


def login(client, email: str, password: str, ip: str, **headers):
    return client.post("/auth/login", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip}, headers=headers)


def assert_limited(response, *, template_marker: str = 'action="/auth/login"'):
    assert response.status_code == 429, response.text
    retry = int(response.headers["Retry-After"])
    assert 0 < retry <= WINDOW
    message = re.search(r'data-auth-alert><p>([^<]*)</p>', response.text).group(1)
    assert re.fullmatch(r"Too many attempts, try again in (\d+) seconds\.", message)
    assert template_marker in response.text  # the form itself, ready for the next try
    assert 'name="email"' in response.text


def test_one_account_from_rotating_addresses(client, user, make_user):
    for attempt in range(LIMIT):
        response = login(client, "alice@example.com", "wrong-password", f"10.0.0.{attempt + 1}")
        assert response.status_code == 422
    # The 11th attempt is refused before the password is even checked: the right one too.
    refused = login(client, "ALICE@example.com ", PASSWORD, "10.0.1.1")
    assert_limited(refused)
    assert 'value="ALICE@example.com "' in refused.text  # what was typed is kept
    assert client.get("/dashboard").status_code == 302
    # Other accounts are not affected, from a fresh address or from one used above.
    make_user("bob@example.com")
    assert login(client, "bob@example.com", PASSWORD, "10.0.0.1").status_code == 302


def test_one_address_across_accounts(client, user, make_user):
    for attempt in range(LIMIT):
        response = login(client, f"nobody{attempt}@example.com", "wrong-password", "192.0.2.7")
        assert response.status_code == 422
    assert_limited(login(client, "alice@example.com", PASSWORD, "192.0.2.7"))
    assert client.get("/dashboard").status_code == 302
    # Another address signs in to the same account fine.
    assert login(client, "alice@example.com", PASSWORD, "192.0.2.8").status_code == 302


def test_rotating_forwarded_for_does_not_reset_the_count(client, user):
    for attempt in range(LIMIT):
        login(client, f"x{attempt}@example.com", "wrong", "192.0.2.9",
              **{"X-Forwarded-For": f"203.0.113.{attempt}"})
    assert_limited(login(client, "y@example.com", "wrong", "192.0.2.9",
                         **{"X-Forwarded-For": "203.0.113.200"}))


def test_successful_sign_ins_do_not_count(client, user):
    for _ in range(LIMIT + 5):
        assert login(client, "alice@example.com", PASSWORD, "192.0.2.10").status_code == 302
        client.post("/auth/logout")


def test_unknown_user_and_wrong_password_look_identical(client, user):
    known = login(client, "alice@example.com", "wrong-password", "192.0.2.11")
    unknown = login(client, "nobody@example.com", "wrong-password", "192.0.2.12")
    assert known.status_code == unknown.status_code == 422
    assert field_error(known.text, "password") == field_error(unknown.text, "password")


def test_get_is_never_limited(client):
    for _ in range(LIMIT):
        login(client, "a@example.com", "wrong", "127.0.0.1")
    assert login(client, "a@example.com", "wrong", "127.0.0.1").status_code == 429
    for _ in range(3):
        assert client.get("/auth/login").status_code == 200
        assert client.get("/auth/signup").status_code == 200


def test_signup_is_limited_per_address(client):
    for attempt in range(LIMIT):
        response = client.post("/auth/signup", data={"email": f"new{attempt}@example.com",
                                                      "password": PASSWORD},
                               environ_base={"REMOTE_ADDR": "198.51.100.1"})
        assert response.status_code == 302
        client.post("/auth/logout")
    refused = client.post("/auth/signup", data={"email": "one-more@example.com",
                                                 "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert_limited(refused, template_marker='action="/auth/signup"')
    assert client.post("/auth/signup", data={"email": "one-more@example.com", "password": PASSWORD},
                       environ_base={"REMOTE_ADDR": "198.51.100.2"}).status_code == 302


def test_signup_is_limited_per_email(client):
    for attempt in range(LIMIT):
        response = client.post("/auth/signup", data={"email": "target@example.com", "password": "short"},
                               environ_base={"REMOTE_ADDR": f"198.51.100.{attempt + 10}"})
        assert response.status_code == 422
    assert_limited(client.post("/auth/signup", data={"email": "Target@example.com",
                                                      "password": PASSWORD},
                               environ_base={"REMOTE_ADDR": "198.51.100.99"}),
                   template_marker='action="/auth/signup"')


class TestOff:
    @pytest.fixture
    def app_config(self):
        return {"AUTH_RATE_LIMIT": None}

    def test_no_limit(self, client, user):
        for _ in range(LIMIT + 3):
            assert login(client, "alice@example.com", "wrong", "192.0.2.1").status_code == 422
        assert login(client, "alice@example.com", PASSWORD, "192.0.2.1").status_code == 302
