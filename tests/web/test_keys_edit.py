"""Settings → API keys, editing: name, IP allowlist, spend limit, disable/enable, and the
API obeying what was set in the UI (and its error codes)."""
from __future__ import annotations

import re

import pytest

from runbase_web.extensions import db
from runbase_web.models import ApiKey, LedgerEntry
from tests.conftest import wait_for_run
from tests.web import field_error


@pytest.fixture
def key_id(app, api_key):
    """The id of alice's key `api_key`."""
    with app.app_context():
        return db.session.query(ApiKey).one().id


def stored(app, key_id: int) -> ApiKey:
    """The key row as stored."""
    with app.app_context():
        return db.session.get(ApiKey, key_id)


def edit(client, key_id: int, *, name="test key", ips="", limit=""):
    """Submit the edit form."""
    return client.post(f"/settings/keys/{key_id}/edit",
                       data={"name": name, "ip_allowlist": ips, "spend_limit": limit})


def get_run(client, auth, ip="127.0.0.1"):
    """GET a run that doesn't exist: 404 run_not_found means the key authenticated."""
    return client.get("/api/v1/runs/run_x", headers=auth, environ_base={"REMOTE_ADDR": ip})


def create_run(client, auth, **input_):
    """POST /api/v1/runs with local/test ($0.0001)."""
    return client.post("/api/v1/runs", headers=auth,
                       json={"model": "local/test", "input": {"prompt": "a fox", **input_}})


def error_code(response) -> str:
    """The API error envelope's code."""
    return response.get_json()["error"]["code"]


# --- the form ------------------------------------------------------------------------------


def test_edit_page_shows_the_stored_settings(app, signed_in, key_id):
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        key.ip_allowlist, key.spend_limit_micros = ["203.0.113.7", "2001:db8::1"], 12_340_000
        db.session.commit()
    page = signed_in.get(f"/settings/keys/{key_id}/edit")
    assert page.status_code == 200
    assert 'value="test key"' in page.text
    assert ">203.0.113.7\n2001:db8::1</textarea>" in page.text
    assert 'value="12.34"' in page.text
    assert "CIDR ranges such as 10.0.0.0/24 are not accepted" in page.text


def test_saving_normalises_addresses_and_stores_the_limit_in_micros(app, signed_in, key_id):
    response = edit(signed_in, key_id, name="  ci runner ",
                    ips="203.0.113.7\r\n::ffff:198.51.100.9, 2001:DB8:0:0::0001\n203.0.113.7",
                    limit="25.50")
    assert response.status_code == 303 and response.headers["Location"] == "/settings/keys"
    key = stored(app, key_id)
    assert key.name == "ci runner"
    assert key.ip_allowlist == ["203.0.113.7", "198.51.100.9", "2001:db8::1"]
    assert key.spend_limit_micros == 25_500_000
    row = re.search(rf'<tr data-key-id="{key_id}">.*?</tr>', signed_in.get("/settings/keys").text, re.S).group(0)
    assert ">ci runner</td>" in row and "3 IPs" in row
    assert re.search(r'data-remaining><span title="of \$25.50">\$25.50</span>', row)


def test_emptying_the_fields_removes_allowlist_and_limit(app, signed_in, key_id):
    edit(signed_in, key_id, ips="203.0.113.7", limit="5")
    assert stored(app, key_id).spend_limit_micros == 5_000_000
    assert edit(signed_in, key_id, ips="  ", limit=" ").status_code == 303
    key = stored(app, key_id)
    assert key.ip_allowlist == [] and key.spend_limit_micros is None
    assert "no limit" in signed_in.get("/settings/keys").text


def test_an_eleventh_address_is_refused_next_to_the_field(app, signed_in, key_id):
    ten = "\n".join(f"192.0.2.{n}" for n in range(1, 11))
    assert edit(signed_in, key_id, ips=ten).status_code == 303
    assert len(stored(app, key_id).ip_allowlist) == 10
    response = edit(signed_in, key_id, name="renamed", ips=ten + "\n2001:db8::11", limit="3")
    assert response.status_code == 422
    assert field_error(response.text, "ip_allowlist") == "A key accepts at most 10 addresses; you listed 11."
    assert "2001:db8::11</textarea>" in response.text  # what was typed is kept
    key = stored(app, key_id)
    assert key.name == "test key" and key.spend_limit_micros is None and len(key.ip_allowlist) == 10


@pytest.mark.parametrize("ips, message", [
    ("203.0.113.300", "203.0.113.300 is not an IPv4 or IPv6 address."),
    ("example.com", "example.com is not an IPv4 or IPv6 address."),
    ("10.0.0.0/24", "10.0.0.0/24 is a range; list single addresses (ranges like 10.0.0.0/24 aren't supported)."),
    ("fe80::1%eth0", "fe80::1%eth0 has a zone (%…); leave it out."),
])
def test_bad_addresses_are_refused(app, signed_in, key_id, ips, message):
    response = edit(signed_in, key_id, ips=ips)
    assert response.status_code == 422
    assert field_error(response.text, "ip_allowlist") == message.replace("'", "&#39;")
    assert stored(app, key_id).ip_allowlist == []


@pytest.mark.parametrize("limit, expected", [
    ("25.50", 25_500_000), ("$7", 7_000_000), ("0", 0), ("0.01", 10_000),
    ("1000000", 1_000_000_000_000), ("3.100", 3_100_000),
])
def test_limits_are_exact_dollars_and_cents(app, signed_in, key_id, limit, expected):
    assert edit(signed_in, key_id, limit=limit).status_code == 303
    assert stored(app, key_id).spend_limit_micros == expected


@pytest.mark.parametrize("limit, message", [
    ("-5", "The amount can&#39;t be negative."),
    ("1.005", "Use at most 2 decimals (cents)."),
    ("abc", "Enter an amount in dollars, like 25.50."),
    ("1e3", "Enter an amount in dollars, like 25.50."),
    ("1,000", "Enter an amount in dollars, like 25.50."),
    ("NaN", "Enter an amount in dollars, like 25.50."),
    ("1000000.01", "That is more than the $1,000,000.00 allowed."),
    ("9" * 40, "That is more than the $1,000,000.00 allowed."),
])
def test_bad_limits_are_refused_next_to_the_field(app, signed_in, key_id, limit, message):
    response = edit(signed_in, key_id, limit=limit)
    assert response.status_code == 422
    assert field_error(response.text, "spend_limit") == message
    assert f'value="{limit}"' in response.text
    assert stored(app, key_id).spend_limit_micros is None


def test_all_errors_show_at_once(signed_in, key_id):
    response = edit(signed_in, key_id, name="", ips="nope", limit="-1")
    assert response.status_code == 422
    assert field_error(response.text, "name") == "Give the key a name."
    assert field_error(response.text, "ip_allowlist") == "nope is not an IPv4 or IPv6 address."
    assert field_error(response.text, "spend_limit") == "The amount can&#39;t be negative."
    assert response.text.count('aria-invalid="true"') == 3


def test_other_users_and_deleted_keys_cannot_be_edited(app, signed_in, make_user, make_key):
    bob = make_user("bob@example.com")
    make_key(bob, "bob's")
    with app.app_context():
        bobs = db.session.query(ApiKey).one().id
    for url in (f"/settings/keys/{bobs}/edit", "/settings/keys/999/edit", "/settings/keys/0/edit",
                "/settings/keys/99999999999999999999999/edit"):
        assert signed_in.get(url).status_code == 404
    assert edit(signed_in, bobs, name="mine now").status_code == 404
    assert signed_in.post(f"/settings/keys/{bobs}/disable").status_code == 404
    assert signed_in.post(f"/settings/keys/{bobs}/enable").status_code == 404
    key = stored(app, bobs)
    assert key.name == "bob's" and not key.disabled
    signed_in.post("/settings/keys", data={"name": "gone"})
    with app.app_context():
        gone = db.session.query(ApiKey).filter_by(name="gone").one().id
    signed_in.post(f"/settings/keys/{gone}/delete")
    assert signed_in.get(f"/settings/keys/{gone}/edit").status_code == 404
    assert signed_in.post(f"/settings/keys/{gone}/enable").status_code == 404


def test_editing_needs_a_session(client, key_id):
    response = client.get(f"/settings/keys/{key_id}/edit")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert client.post(f"/settings/keys/{key_id}/disable").status_code == 302
    assert client.get(f"/settings/keys/{key_id}/disable").status_code == 405


# --- the API obeys the UI --------------------------------------------------------------------


def test_allowlist_set_in_the_ui_is_enforced_by_the_api(signed_in, key_id, auth):
    assert get_run(signed_in, auth, "203.0.113.5").status_code == 404
    edit(signed_in, key_id, ips="198.51.100.7\n2001:db8::7")
    refused = get_run(signed_in, auth, "203.0.113.5")
    assert refused.status_code == 403 and error_code(refused) == "ip_not_allowed"
    assert error_code(create_run(signed_in, auth)) == "ip_not_allowed"
    assert get_run(signed_in, auth, "198.51.100.7").status_code == 404
    assert get_run(signed_in, auth, "2001:db8:0::7").status_code == 404
    edit(signed_in, key_id, ips="")
    assert get_run(signed_in, auth, "203.0.113.5").status_code == 404


def test_spend_limit_set_in_the_ui_is_enforced_by_the_api(app, signed_in, key_id, auth):
    edit(signed_in, key_id, limit="0")
    refused = create_run(signed_in, auth)
    assert refused.status_code == 403 and error_code(refused) == "api_key_spend_limit_exceeded"
    edit(signed_in, key_id, limit="0.01")
    assert create_run(signed_in, auth).status_code == 201
    account = signed_in.get("/api/v1/account", headers=auth).get_json()["apiKey"]
    assert account == {**account, "spentUsd": 100, "spendLimitUsd": 10_000, "remainingUsd": 9_900}
    row = re.search(rf'<tr data-key-id="{key_id}">.*?</tr>', signed_in.get("/settings/keys").text, re.S).group(0)
    assert re.search(r"data-spent>\$0.0001<", row) and re.search(r">\$0.0099</span>", row)


def test_a_limit_below_what_the_key_spent_is_refused(app, signed_in, key_id, auth):
    assert create_run(signed_in, auth).status_code == 201  # spent $0.0001
    response = edit(signed_in, key_id, name="renamed", limit="0.00")
    assert response.status_code == 422
    assert field_error(response.text, "spend_limit") == (
        "This key has already spent $0.0001; the limit can&#39;t be lower than that.")
    key = stored(app, key_id)
    assert key.spend_limit_micros is None and key.name == "test key"


def test_disable_refuses_at_once_and_enable_restores(app, signed_in, key_id, auth):
    response = signed_in.post(f"/settings/keys/{key_id}/disable")
    assert response.status_code == 303 and response.headers["Location"] == "/settings/keys"
    assert stored(app, key_id).disabled
    refused = get_run(signed_in, auth)
    assert refused.status_code == 401 and error_code(refused) == "invalid_api_key"
    assert create_run(signed_in, auth).status_code == 401
    row = re.search(rf'<tr data-key-id="{key_id}">.*?</tr>', signed_in.get("/settings/keys").text, re.S).group(0)
    assert ">disabled</span>" in row and "Enable</button>" in row
    back = signed_in.post(f"/settings/keys/{key_id}/enable", data={"back": "edit"})
    assert back.headers["Location"] == f"/settings/keys/{key_id}/edit"
    assert get_run(signed_in, auth).status_code == 404
    assert create_run(signed_in, auth).status_code == 201


def test_a_run_in_flight_when_its_key_is_disabled_finishes_normally(app, signed_in, key_id, auth, user, worker):
    created = create_run(signed_in, auth, delay_ms=1500)
    assert created.status_code == 201
    run_id = created.get_json()["id"]
    signed_in.post(f"/settings/keys/{key_id}/disable")
    assert get_run(signed_in, auth).status_code == 401
    run = wait_for_run(app, run_id)
    assert run.status == "succeeded"
    with app.app_context():
        kinds = [e.kind for e in db.session.query(LedgerEntry).filter_by(run_id=run_id)]
        assert kinds == ["charge"]
    assert stored(app, key_id).spent_micros == 100
    signed_in.post(f"/settings/keys/{key_id}/enable")
    assert signed_in.get(f"/api/v1/runs/{run_id}", headers=auth).get_json()["status"] == "succeeded"


# --- in a real browser (CSRF on, strict CSP) ------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("app_config", [{"WTF_CSRF_ENABLED": True}])
def test_edit_disable_and_credits_pages_in_a_browser(page, app):
    """The plain forms work with CSRF on, errors sit by their fields, and neither page
    breaks the CSP (no inline script or style)."""
    from playwright.sync_api import expect

    from tests.support.pages import sign_up

    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda error: seen.append(f"pageerror: {error}"))
    sign_up(page)
    page.goto("/settings/keys")
    page.get_by_label("Name").fill("browser key")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("link", name="Edit browser key").click()
    page.get_by_label("IP allowlist").fill("\n".join(f"192.0.2.{n}" for n in range(1, 12)))
    page.get_by_label("Lifetime spend limit (USD)").fill("12.345")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-ip_allowlist-error")).to_have_text("A key accepts at most 10 addresses; you listed 11.")
    expect(page.locator("#f-spend_limit-error")).to_have_text("Use at most 2 decimals (cents).")
    page.get_by_label("IP allowlist").fill("192.0.2.1\n::ffff:192.0.2.2")
    page.get_by_label("Lifetime spend limit (USD)").fill("12.34")
    page.get_by_role("button", name="Save").click()
    row = page.locator("tr", has_text="browser key")
    expect(row.locator("[data-remaining]")).to_have_text("$12.34")
    expect(row).to_contain_text("2 IPs")
    row.get_by_role("button", name="Disable").click()
    expect(row.locator("[data-key-status]")).to_have_text("disabled")
    page.goto("/settings/credits")
    expect(page.locator("[data-topups-off]")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    assert seen == []
