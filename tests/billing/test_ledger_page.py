"""Settings → Credits: balance, full history newest first with keyset pages, CSV export."""
from __future__ import annotations

import csv
import io
import re

import pytest

from runbase_web.extensions import db
from runbase_web.models import EntryKind
from runbase_web.services import ledger
from tests.billing import add_grants, entries_of


def entry_ids(html: str) -> list[int]:
    """The ledger entry ids shown on a page, in page order."""
    return [int(n) for n in re.findall(r'<tr data-entry-id="(\d+)">', html)]


def link(html: str, rel: str) -> str | None:
    """The href of the pager link with this rel."""
    match = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def read_csv(response) -> list[dict]:
    """The CSV body as dicts."""
    return list(csv.DictReader(io.StringIO(response.text)))


def test_pages_need_a_session(client):
    for url in ("/settings/credits", "/settings/credits.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_balance_and_history_with_run_links(app, signed_in, user, auth):
    created = signed_in.post("/api/v1/runs", headers=auth,
                             json={"model": "local/test", "input": {"prompt": "a fox"}})
    run_id = created.get_json()["id"]
    page = signed_in.get("/settings/credits")
    assert page.status_code == 200
    assert re.search(r"data-balance>\$0.9999<", page.text)
    rows = re.findall(r'<tr data-entry-id="\d+">(.*?)</tr>', page.text, re.S)
    assert len(rows) == 2
    charge, grant = rows  # newest first
    assert ">charge<" in charge and "-$0.0001" in charge and f'href="/runs/{run_id}"' in charge
    assert "$0.9999" in charge
    assert ">grant<" in grant and "+$1.00" in grant and "Signup credit" in grant and "/runs/" not in grant
    assert re.search(r"<time datetime=\"[^\"]+\">\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC</time>", grant)
    assert link(page.text, "next") is None and link(page.text, "prev") is None


def test_other_accounts_entries_are_not_shown(app, signed_in, make_user):
    bob = make_user("bob@example.com")
    add_grants(app, bob.id, 3, note="bob secret {n}")
    page = signed_in.get("/settings/credits").text
    assert "bob secret" not in page and len(entry_ids(page)) == 1
    assert "bob secret" not in signed_in.get("/settings/credits.csv").text


def test_history_pages_by_fifty_newest_first(app, signed_in, user):
    add_grants(app, user.id, 120)  # 121 entries with the signup grant
    all_ids = [e.id for e in entries_of(app, user.id)][::-1]
    first = signed_in.get("/settings/credits").text
    assert entry_ids(first) == all_ids[:50] and ">g120<" in first
    assert link(first, "prev") is None
    second = signed_in.get(link(first, "next")).text
    assert entry_ids(second) == all_ids[50:100]
    third = signed_in.get(link(second, "next")).text
    assert entry_ids(third) == all_ids[100:] and len(all_ids[100:]) == 21
    assert link(third, "next") is None and "Signup credit" in third
    assert entry_ids(signed_in.get(link(third, "prev")).text) == all_ids[50:100]
    # A new entry doesn't shift an older page (keyset, not offset).
    add_grants(app, user.id, 1, note="late")
    assert entry_ids(signed_in.get(link(first, "next")).text) == all_ids[50:100]
    assert ">late<" in signed_in.get("/settings/credits").text


def test_bad_cursors_are_harmless(signed_in):
    assert signed_in.get("/settings/credits?before=abc&after=-1").status_code == 200
    assert signed_in.get("/settings/credits?before=" + "9" * 40).status_code == 200
    page = signed_in.get("/settings/credits?before=1").text
    assert entry_ids(page) == [] and "Back to the newest" in page


def test_csv_has_exact_amounts_and_is_an_attachment(app, signed_in, user, auth):
    run_id = signed_in.post("/api/v1/runs", headers=auth, json={
        "model": "local/test", "input": {"prompt": "a fox"}}).get_json()["id"]
    with app.app_context():
        ledger.credit(db.session, user.id, 12_345_678, kind=EntryKind.ADJUST, note="fix, \"quoted\"")
        db.session.commit()
    response = signed_in.get("/settings/credits.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="runbase-ledger-\d{4}-\d{2}-\d{2}\.csv"',
                        response.headers["Content-Disposition"])
    assert response.text.startswith("date_utc,kind,amount_usd,amount_micros,balance_after_usd,"
                                    "balance_after_micros,run_id,reference,note\r\n")
    adjust, charge, grant = read_csv(response)
    assert adjust == {**adjust, "kind": "adjust", "amount_usd": "12.345678", "amount_micros": "12345678",
                      "balance_after_usd": "13.345578", "balance_after_micros": "13345578",
                      "note": 'fix, "quoted"', "run_id": ""}
    assert charge == {**charge, "kind": "charge", "amount_usd": "-0.000100", "amount_micros": "-100",
                      "balance_after_usd": "0.999900", "run_id": run_id}
    assert grant["amount_usd"] == "1.000000" and grant["note"] == "Signup credit"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", grant["date_utc"])


@pytest.mark.parametrize("note", ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)",
                                  "\tTAB", "\rCR"])
def test_csv_notes_cannot_become_formulas(app, signed_in, user, note):
    with app.app_context():
        ledger.credit(db.session, user.id, 1, kind=EntryKind.GRANT, note=note)
        db.session.commit()
    newest = read_csv(signed_in.get("/settings/credits.csv"))[0]
    assert newest["note"] == "'" + note
    assert newest["amount_usd"] == "0.000001"


def test_csv_streams_long_histories_in_batches(app, signed_in, user, monkeypatch):
    from runbase_web.services import billing
    monkeypatch.setattr(billing, "CSV_BATCH", 7)
    add_grants(app, user.id, 20)
    rows = read_csv(signed_in.get("/settings/credits.csv"))
    assert [row["note"] for row in rows] == [f"g{n}" for n in range(20, 0, -1)] + ["Signup credit"]
    assert sum(int(row["amount_micros"]) for row in rows) == 1_000_020


def test_without_stripe_the_page_says_how_to_get_credit(signed_in, user):
    page = signed_in.get("/settings/credits").text
    assert "Online top-ups are not configured on this server." in page
    assert "ask the administrator of this server" in page
    # End users are never shown shell commands or server settings they can't use.
    assert "flask --app" not in page and "STRIPE_SECRET_KEY" not in page
    assert "Pay with Stripe" not in page
    assert signed_in.post("/settings/credits/topup", data={"amount": "500"}).status_code == 404
