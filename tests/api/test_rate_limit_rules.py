"""The per-key limit on the runs endpoints: one budget per key whatever the header spelling,
and a Retry-After that is always long enough. (tests/test_ratelimit.py checks the moving
window itself, in memory and in Redis.)

The limiter only counts (no database rows), so these tests run on SQLite alone.
"""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MISSING = "/api/v1/runs/run_missing"


@pytest.fixture
def app_config():
    return {"RATE_LIMIT": (3, 10)}


def spellings(key: str) -> list[str]:
    """Authorization values the authenticator accepts for the same key."""
    return [f"Bearer {key}", f"bearer {key}", f"BEARER {key}", f"BeArEr {key}",
            f"Bearer  {key}", f"Bearer {key} ", f"Bearer \t{key}"]


def test_every_accepted_spelling_of_the_header_shares_one_budget(client, api_key):
    for value in spellings(api_key)[:3]:
        assert client.get(MISSING, headers={"Authorization": value}).status_code == 404
    for value in spellings(api_key):
        refused = client.get(MISSING, headers={"Authorization": value})
        assert refused.status_code == 429, value
        assert refused.get_json()["error"]["code"] == "RATE_LIMITED"


def test_spellings_are_ones_the_authenticator_accepts(app, client, api_key):
    app.config["RATE_LIMIT"] = None
    for value in spellings(api_key):
        assert client.get(MISSING, headers={"Authorization": value}).status_code == 404, value


def test_rate_limit_headers_on_allowed_and_refused_answers(client, auth):
    first = client.get(MISSING, headers=auth)
    assert first.headers["X-RateLimit-Limit"] == "3"
    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert int(first.headers["X-RateLimit-Reset"]) >= time.time()
    for _ in range(2):
        client.get(MISSING, headers=auth)
    refused = client.get(MISSING, headers=auth)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10


@pytest.mark.parametrize("app_config", [{"RATE_LIMIT": (2, 2)}])
def test_waiting_exactly_retry_after_always_gets_in(client, auth):
    for _ in range(3):  # land the refusals at different offsets within a second
        while client.get(MISSING, headers=auth).status_code != 429:
            pass
        refused = client.get(MISSING, headers=auth)
        time.sleep(int(refused.headers["Retry-After"]))
        assert client.get(MISSING, headers=auth).status_code == 404
        time.sleep(0.3)


def test_the_limit_counts_per_key(client, auth, user, make_key):
    for _ in range(3):
        client.get(MISSING, headers=auth)
    assert client.get(MISSING, headers=auth).status_code == 429
    other = {"Authorization": f"Bearer {make_key(user, 'second')}"}
    assert client.get(MISSING, headers=other).status_code == 404
