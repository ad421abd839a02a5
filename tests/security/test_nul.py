"""A NUL character anywhere in a URL part, query string or form field is refused with a
plain 400/404: PostgreSQL cannot store or compare such text, so reaching a query with
one was a 500 (found by the S9 traversal corpus: /files/generated/x%00.png)."""
from __future__ import annotations

from tests.web import HTMX, sign_in


def test_nul_in_urls_forms_and_queries_is_never_a_500(client, user, auth):
    anonymous = [
        ("POST", "/auth/login", {"email": "a\x00@example.com", "password": "x"}),
        ("POST", "/auth/signup", {"email": "a\x00b@example.com", "password": "password123"}),
        ("GET", "/files/generated/x%00.png", None),
        ("GET", "/auth/login?next=/\x00/evil.com", None),
        ("GET", "/s/a%00b", None),
    ]
    signed_in = [
        ("POST", "/settings/keys", {"name": "a\x00b"}),
        ("GET", "/runs/run_a%00b", None),
        ("GET", "/runs/run_a%00b/tile", None),
        ("GET", "/playground/runs/run_a%00b/card", None),
        ("GET", "/runs?model=a%00b", None),
        ("GET", "/dashboard?x\x00=1", None),
    ]
    for method, url, data in anonymous:
        response = client.open(url, method=method, data=data, headers=HTMX)
        assert response.status_code in (400, 404), (url, response.status_code)
    sign_in(client, user.email)
    for method, url, data in signed_in:
        response = client.open(url, method=method, data=data, headers=HTMX)
        assert response.status_code in (400, 404), (url, response.status_code)
    api = client.get("/api/v1/runs/run_a%00b", headers=auth)
    assert api.status_code == 404 and api.get_json()["error"]


def test_nul_in_an_api_query_is_invalid_query(client, auth):
    # In the API's envelope with its own code, not the framework's stock 400 text, on every
    # path under /api/ (a matched route or not).
    for url in ("/api/v1/runs?model=a%00b", "/api/v1/models?x=%00", "/api/v1/nothing?a%00=1"):
        answer = client.get(url, headers=auth)
        assert answer.status_code == 400, url
        assert answer.get_json()["error"] == {
            "code": "invalid_query", "message": "Query parameters may not contain a NUL character."}


def test_ordinary_requests_are_untouched(client, user):
    sign_in(client, user.email)
    assert client.get("/runs?model=local/sketch").status_code == 200
    assert client.post("/settings/keys", data={"name": "ok name"}).status_code == 201
