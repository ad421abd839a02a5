"""Per-key rate limits, trusted proxies, IP allowlists and the account endpoint."""
from __future__ import annotations

import pytest

from runbase_web.extensions import db
from runbase_web.services import keys as key_service

SKETCH = {"model": "local/sketch", "input": {"prompt": "x"}}


def set_key(app, full_key, **fields):
    with app.app_context():
        key = key_service.find_active_key(db.session, full_key)
        for name, value in fields.items():
            setattr(key, name, value)
        db.session.commit()


@pytest.fixture
def app_config():
    return {"RATE_LIMIT": (20, 10)}


def test_runs_endpoints_share_a_per_key_limit(client, auth, user, make_key):
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    statuses = [client.get(f"/api/v1/runs/{run_id}", headers=auth).status_code for _ in range(19)]
    assert statuses == [200] * 19
    limited = client.post("/api/v1/runs", json=SKETCH, headers=auth)
    assert limited.status_code == 429
    assert limited.get_json() == {"error": {"message": "Rate limit exceeded", "code": "RATE_LIMITED"}}
    assert 0 < int(limited.headers["Retry-After"]) <= 10
    # Another key of the same account has its own budget.
    other = {"Authorization": f"Bearer {make_key(user, 'second')}"}
    assert client.get(f"/api/v1/runs/{run_id}", headers=other).status_code == 200


def test_rate_limit_can_be_turned_off(app, client, auth):
    app.config["RATE_LIMIT"] = None
    assert all(client.get("/api/v1/runs/run_x", headers=auth).status_code == 404 for _ in range(30))


def test_account_shows_balance_and_key_spend(app, client, auth, api_key):
    set_key(app, api_key, spend_limit_micros=5000)
    client.post("/api/v1/runs", json=SKETCH, headers=auth)
    body = client.get("/api/v1/account", headers=auth).get_json()
    assert body["balanceUsd"] == 999_000 and body["email"] == "alice@example.com"
    assert body["apiKey"]["spentUsd"] == 1000 and body["apiKey"]["spendLimitUsd"] == 5000
    assert body["apiKey"]["remainingUsd"] == 4000 and body["apiKey"]["prefix"] == api_key[:10]


def test_spend_limit_refuses_the_run_that_would_pass_it(app, client, auth, api_key):
    set_key(app, api_key, spend_limit_micros=2500)
    assert [client.post("/api/v1/runs", json=SKETCH, headers=auth).status_code for _ in range(3)] == [201, 201, 403]
    refused = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()
    assert refused["error"]["code"] == "api_key_spend_limit_exceeded"


def test_ip_allowlist_uses_the_socket_address(app, client, auth, api_key):
    set_key(app, api_key, ip_allowlist=["203.0.113.7", "2001:db8::1"])
    spoofed = dict(auth, **{"X-Forwarded-For": "203.0.113.7"})
    response = client.get("/api/v1/runs/run_x", headers=spoofed)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "ip_not_allowed"
    allowed = client.get("/api/v1/runs/run_x", headers=auth, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert allowed.status_code == 404
    v6 = client.get("/api/v1/runs/run_x", headers=auth, environ_base={"REMOTE_ADDR": "2001:db8:0::1"})
    assert v6.status_code == 404
    # A dual-stack socket shows an IPv4 caller as ::ffff:a.b.c.d; it is still that address.
    mapped = client.get("/api/v1/runs/run_x", headers=auth,
                        environ_base={"REMOTE_ADDR": "::ffff:203.0.113.7"})
    assert mapped.status_code == 404
    other = client.get("/api/v1/runs/run_x", headers=auth,
                       environ_base={"REMOTE_ADDR": "::ffff:203.0.113.8"})
    assert other.status_code == 403


def test_trusted_proxy_hop_reads_the_rightmost_forwarded_address(app_config, app, client, auth, api_key):
    from runbase_web import _trust_proxies
    app.config["TRUSTED_PROXIES"] = 1
    _trust_proxies(app)
    set_key(app, api_key, ip_allowlist=["198.51.100.4"])
    through_proxy = dict(auth, **{"X-Forwarded-For": "198.51.100.4"})
    assert client.get("/api/v1/runs/run_x", headers=through_proxy).status_code == 404
    # K6: a client-supplied leftmost entry is not trusted; the proxy appended the real one.
    spoofed = dict(auth, **{"X-Forwarded-For": "198.51.100.4, 192.0.2.99"})
    assert client.get("/api/v1/runs/run_x", headers=spoofed).status_code == 403
