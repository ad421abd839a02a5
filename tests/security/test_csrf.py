"""S1: every cookie-authenticated state-changing route refuses a request without a valid
CSRF token (400, nothing changed), including another session's token, and accepts the
token the page puts in <body hx-headers>. Routes are enumerated from the URL map, so a
new route is covered the day it is added."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from runbase_web.extensions import db
from runbase_web.models import ApiKey, Base
from tests.web import HTMX, PASSWORD

#: Authenticated by something other than the session cookie: Stripe-Signature, and the
#: providers' signatures on their callbacks.
NOT_COOKIE_AUTHENTICATED = {"/stripe/webhook", "/callbacks/<adapter>/<run_id>/<token>"}
#: Flask-WTF's refusal texts ("The CSRF token is missing.", "The CSRF tokens do not match.").
CSRF_REFUSAL = re.compile(r"The CSRF (session )?tokens? ")


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def mutating_rules(app):
    """(rule, method) for every non-API route that changes state."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule in NOT_COOKIE_AUTHENTICATED:
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            found.append((rule, method))
    return sorted(found, key=lambda pair: (pair[0].rule == "/auth/logout", pair[0].rule))


def url_for_rule(rule, values: dict) -> str:
    url = rule.rule
    for argument in rule.arguments:
        url = re.sub(rf"<(?:[^:<>]+:)?{argument}>", str(values.get(argument, "x")), url)
    return url


def snapshot(app) -> str:
    """Every row of every table, to show a refused request changed nothing."""
    with app.app_context():
        rows = {}
        for table in Base.metadata.sorted_tables:
            rows[table.name] = [repr(tuple(row)) for row in
                                db.session.execute(select(table).order_by(*table.primary_key.columns))]
        return json.dumps(rows, sort_keys=True)


def page_token(client, url: str = "/dashboard") -> str:
    page = client.get(url).text
    return re.search(r'<body hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'>', page).group(1)


def signed_in_client(app, email: str):
    client = app.test_client()
    form = client.get("/auth/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = client.post("/auth/login", data={"email": email, "password": PASSWORD,
                                                 "csrf_token": token})
    assert response.status_code == 302
    return client


@pytest.fixture
def setting(app, user, auth, client):
    """A signed-in client with a run and a key, and the values for the URL arguments."""
    created = client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": "p"}},
                          headers=auth)
    assert created.status_code == 201
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == user.id))
    return {"run_id": created.get_json()["id"], "key_id": key_id, "delivery_id": "1",
            "token": "x", "index": "0"}


def test_routes_are_found(app):
    rules = {rule.rule for rule, _ in mutating_rules(app)}
    assert {"/auth/login", "/auth/logout", "/settings/keys", "/playground/runs"} <= rules


def test_without_token_refused_and_nothing_changes(app, user, setting):
    client = signed_in_client(app, user.email)
    before = snapshot(app)
    for rule, method in mutating_rules(app):
        url = url_for_rule(rule, setting)
        for headers in ({}, HTMX):
            response = client.open(url, method=method, headers=headers,
                                   data={"name": "csrf", "email": "x@example.com",
                                         "password": PASSWORD, "prompt": "p", "model": "local/sketch"})
            assert response.status_code == 400, (method, url, response.status_code)
            assert CSRF_REFUSAL.search(response.text), (method, url)
    assert snapshot(app) == before
    assert client.get("/dashboard").status_code == 200  # still signed in: logout was refused too


def test_another_sessions_token_is_refused(app, user, make_user, setting):
    victim = signed_in_client(app, user.email)
    attacker = signed_in_client(app, make_user("mallory@example.com").email)
    stolen = page_token(attacker)
    before = snapshot(app)
    for rule, method in mutating_rules(app):
        url = url_for_rule(rule, setting)
        response = victim.open(url, method=method, headers={**HTMX, "X-CSRFToken": stolen},
                               data={"csrf_token": stolen, "name": "csrf"})
        assert response.status_code == 400 and CSRF_REFUSAL.search(response.text), (method, url)
    assert snapshot(app) == before


def test_page_token_in_htmx_header_is_accepted(app, user, setting):
    client = signed_in_client(app, user.email)
    for rule, method in mutating_rules(app):
        url = url_for_rule(rule, setting)
        token = page_token(client) if rule.rule != "/auth/signup" else page_token(client, "/playground")
        response = client.open(url, method=method, headers={**HTMX, "X-CSRFToken": token},
                               data={"name": "csrf ok", "model": "local/sketch", "prompt": "p"})
        assert not CSRF_REFUSAL.search(response.text), (method, url, response.status_code)


def test_a_real_form_post_with_token_changes_state(app, user):
    client = signed_in_client(app, user.email)
    token = page_token(client, "/settings/keys")
    response = client.post("/settings/keys", data={"name": "made with token"},
                           headers={**HTMX, "X-CSRFToken": token})
    assert response.status_code == 201
    with app.app_context():
        assert db.session.scalar(select(ApiKey.id).where(ApiKey.name == "made with token"))


def test_api_does_not_accept_the_session_cookie(app, user):
    """Bearer routes given only a signed-in cookie → 401, never the cookie's account."""
    client = signed_in_client(app, user.email)
    assert client.get("/api/v1/account").status_code == 401
    response = client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": "p"}})
    assert response.status_code == 401
