"""Admin → Credit: admins find an account, see its balance and entries, and grant or
adjust with a note through the same service as `flask add-credit`."""
from __future__ import annotations

import re

import pytest

from runbase_web.extensions import db
from runbase_web.models import User
from tests.billing import entries_of
from tests.web import balance_of, field_error, sign_in


@pytest.fixture
def admin(app, make_user):
    """An administrator account."""
    user = make_user("root@example.com")
    with app.app_context():
        db.session.get(User, user.id).is_admin = True
        db.session.commit()
    return user


@pytest.fixture
def as_admin(client, admin):
    """The test client signed in as the admin."""
    sign_in(client, admin.email)
    return client


def apply(client, email, amount, note="support ticket 42", action="grant"):
    """Submit the grant/adjust form."""
    return client.post("/admin/credit", data={"email": email, "amount": amount, "note": note,
                                              "action": action})


def test_only_admins_see_the_page(client, user, admin):
    assert client.get("/admin/credit").status_code == 404
    assert apply(client, user.email, "5").status_code == 404
    sign_in(client, user.email)
    assert client.get("/admin/credit").status_code == 404
    assert client.get(f"/admin/credit?email={user.email}").status_code == 404
    assert apply(client, user.email, "5").status_code == 404
    assert balance_of(client.application, user.id) == 1_000_000


def test_search_shows_balance_and_latest_entries(as_admin, user):
    page = as_admin.get("/admin/credit").text
    assert 'name="email"' in page and "Grant or adjust" not in page
    page = as_admin.get("/admin/credit?email=ALICE@example.com").text
    assert re.search(r"data-balance>\$1.00<", page) and "alice@example.com" in page
    assert "Signup credit" in page and ">grant<" in page
    assert "No account with this email." in as_admin.get("/admin/credit?email=nobody@example.com").text


def test_grant_adds_credit_with_the_note_and_the_admin(app, as_admin, user, admin):
    response = apply(as_admin, user.email, "2.50")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/credit?email=alice@example.com"
    assert balance_of(app, user.id) == 3_500_000
    newest = entries_of(app, user.id)[-1]
    assert (newest.kind, newest.amount_micros, newest.balance_after_micros) == ("grant", 2_500_000, 3_500_000)
    assert newest.note == f"support ticket 42 (by {admin.email})"
    page = as_admin.get(response.headers["Location"]).text
    assert "Granted $2.50 for alice@example.com." in page and re.search(r"data-balance>\$3.50<", page)


def test_adjust_takes_either_sign_but_never_below_zero(app, as_admin, user):
    assert apply(as_admin, user.email, "-0.400001", action="adjust").status_code == 303
    assert apply(as_admin, user.email, "+0.000002", action="adjust").status_code == 303
    assert [e.kind for e in entries_of(app, user.id)] == ["grant", "adjust", "adjust"]
    assert balance_of(app, user.id) == 600_001
    response = apply(as_admin, user.email, "-0.600002", action="adjust")
    assert response.status_code == 422
    assert field_error(response.text, "amount") == "That would take the balance below zero: it is $0.600001."
    assert 'value="-0.600002"' in response.text and 'value="adjust" checked' in response.text
    assert balance_of(app, user.id) == 600_001
    assert apply(as_admin, user.email, "-0.600001", action="adjust").status_code == 303
    assert balance_of(app, user.id) == 0


@pytest.mark.parametrize("amount, note, action, field, message", [
    ("-1", "x", "grant", "amount", "The amount can&#39;t be negative."),
    ("0", "x", "grant", "amount", "The amount must not be zero."),
    ("0.00", "x", "adjust", "amount", "The amount must not be zero."),
    ("1.0000001", "x", "grant", "amount", "Use at most 6 decimals (micro-dollars)."),
    ("lots", "x", "grant", "amount", "Enter an amount in dollars, like 25.50."),
    ("1000000.01", "x", "grant", "amount", "That is more than the $1,000,000.00 allowed."),
    ("5", "   ", "grant", "note", "Say why, for the ledger."),
    ("5", "n" * 480, "grant", "note", "Notes are at most 500 characters."),
])
def test_bad_input_is_refused_next_to_the_field(app, as_admin, user, amount, note, action, field, message):
    response = apply(as_admin, user.email, amount, note=note, action=action)
    assert response.status_code == 422
    assert field_error(response.text, field) == message
    assert balance_of(app, user.id) == 1_000_000


def test_unknown_email_on_submit(as_admin):
    response = apply(as_admin, "ghost@example.com", "5")
    assert response.status_code == 422
    assert field_error(response.text, "email") == "No account with this email."


def test_the_cli_can_make_the_first_admin(app, client, user):
    result = app.test_cli_runner().invoke(args=["set-admin", user.email])
    assert result.exit_code == 0 and "now an administrator" in result.output
    sign_in(client, user.email)
    assert client.get("/admin/credit").status_code == 200
