"""S7: hostile `next=` values never send anyone off the site after signing in or up."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.web import PASSWORD

HOSTILE_NEXT = [
    "//evil.com", "\\\\evil.com", "/\\evil.com", "\\\\\\evil.com", "/\\/evil.com",
    "https:evil.com", "http://evil.com", "https://evil.com/path", "HTTPS://evil.com",
    "%2F%2Fevil.com", "%5C%5Cevil.com", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "///evil.com", " //evil.com", "/\t/evil.com", "/\r\n/evil.com", "/ok\r\nLocation: https://evil.com",
"evil.com", "@evil.com", "/.\\evil.com",
]


def assert_local(location: str) -> None:
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert not any(ch in location for ch in "\\\r\n\t\x00"), location


@pytest.fixture
def app_config():
    return {"AUTH_RATE_LIMIT": None}  # dozens of sign-ins in one test


def test_login_lands_on_a_local_page(client, user):
    for hostile in HOSTILE_NEXT:
        form = client.get("/auth/login", query_string={"next": hostile})
        assert 'name="next"' not in form.text and "evil.com" not in form.text, hostile
        response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD,
                                                    "next": hostile})
        assert response.status_code == 302 and response.headers["Location"] == "/dashboard", hostile
        # Already signed in: the forms redirect straight to `next`, never off the site.
        for url in ("/auth/login", "/auth/signup"):
            assert_local(client.get(url, query_string={"next": hostile}).headers["Location"])
        client.post("/auth/logout")


def test_signup_lands_on_a_local_page(client):
    for number, hostile in enumerate(HOSTILE_NEXT):
        response = client.post("/auth/signup", data={"email": f"new{number}@example.com",
                                                     "password": PASSWORD, "next": hostile})
        assert response.status_code == 302 and response.headers["Location"] == "/playground", hostile
        client.post("/auth/logout")


def test_the_query_string_form_is_decoded_once(client, user):
    """`next=%2F%2Fevil.com` in a link arrives as "//evil.com" and is refused."""
    response = client.post("/auth/login?next=%2F%2Fevil.com",
                           data={"email": user.email, "password": PASSWORD})
    assert response.headers["Location"] == "/dashboard"


def test_a_local_next_still_works(client, user):
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD,
                                                "next": "/runs?model=local/sketch"})
    assert response.headers["Location"] == "/runs?model=local/sketch"


def test_nul_in_next_is_refused_outright(client, user):
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD,
                                                "next": "/\x00/evil.com"})
    assert response.status_code == 400 and "Location" not in response.headers
