"""Settings → API keys: create (shown once), list, delete, owner checks."""
from __future__ import annotations

import re


from runbase_web.extensions import db
from runbase_web.models import ApiKey
from tests.web import field_error

KEY_RE = re.compile(r"sk-[A-Za-z0-9_-]{32,}")


def api_status(client, full_key: str) -> int:
    """The status the API answers a key with (404 run_not_found means it authenticated)."""
    return client.get("/api/v1/runs/run_x", headers={"Authorization": f"Bearer {full_key}"}).status_code


def test_created_key_is_shown_once_then_only_its_prefix(signed_in):
    created = signed_in.post("/settings/keys", data={"name": "laptop"})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    full_key = KEY_RE.search(created.text).group(0)
    assert "You won't be able to see it again" in created.text

    listing = signed_in.get("/settings/keys")
    assert listing.status_code == 200
    assert full_key not in listing.text
    assert KEY_RE.search(listing.text) is None
    assert f"{full_key[:10]}…" in listing.text and "laptop" in listing.text
    assert "never" in listing.text and "$0.00" in listing.text
    assert api_status(signed_in, full_key) == 404


def test_list_shows_last_used_after_api_use(signed_in, user, make_key):
    full_key = make_key(user, "ci")
    assert api_status(signed_in, full_key) == 404
    row = re.search(r"<tr data-key-id=\"\d+\">\s*<td[^>]*>ci</td>.*?</tr>", signed_in.get("/settings/keys").text, re.S)
    assert row and "just now" in row.group(0) and "never" not in row.group(0)


def test_empty_name_gets_a_default(signed_in):
    assert signed_in.post("/settings/keys", data={"name": "  "}).status_code == 201
    assert "Default key" in signed_in.get("/settings/keys").text


def test_too_long_name_shows_error_next_to_field(app, signed_in):
    response = signed_in.post("/settings/keys", data={"name": "x" * 101})
    assert response.status_code == 422
    assert field_error(response.text, "name") == "Key names are at most 100 characters."
    assert KEY_RE.search(response.text) is None
    with app.app_context():
        assert db.session.query(ApiKey).count() == 0


def test_key_names_are_escaped(signed_in):
    signed_in.post("/settings/keys", data={"name": "<script>alert(1)</script>"})
    page = signed_in.get("/settings/keys").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_delete_stops_the_key_at_once(app, signed_in, user, make_key):
    full_key = make_key(user, "doomed")
    with app.app_context():
        key_id = db.session.query(ApiKey).one().id
    response = signed_in.post(f"/settings/keys/{key_id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/settings/keys"
    assert api_status(signed_in, full_key) == 401
    page = signed_in.get("/settings/keys").text
    assert "doomed" not in page and "API key deleted" in page


def test_other_users_key_cannot_be_deleted(app, signed_in, make_user, make_key):
    bob = make_user("bob@example.com")
    bobs_key = make_key(bob, "bob's")
    with app.app_context():
        key_id = db.session.query(ApiKey).one().id
    assert signed_in.post(f"/settings/keys/{key_id}/delete").status_code == 404
    assert signed_in.post("/settings/keys/999999/delete").status_code == 404
    assert api_status(signed_in, bobs_key) == 404  # still authenticates
    assert "bob&#39;s" not in signed_in.get("/settings/keys").text


def test_delete_is_post_only(signed_in, user, make_key):
    make_key(user)
    assert signed_in.get("/settings/keys/1/delete").status_code == 405


def test_dashboard_shows_balance_and_recent_runs(app, signed_in, user, make_key):
    headers = {"Authorization": f"Bearer {make_key(user)}"}
    signed_in.post("/api/v1/runs", headers=headers,
                   json={"model": "local/test", "input": {"prompt": "dashboard <b>run</b>"}})
    page = signed_in.get("/dashboard").text
    assert "$0.9999" in page
    assert "local/test" in page and "pending" in page
    assert 'data-run-link="run_' in page and 'class="thumb"' in page  # thumbnails, not a table
    assert "dashboard &lt;b&gt;run&lt;/b&gt;" in page and "just now" in page
