"""The Playground's workspace through the test client: the runs column rendered with the
page and paged with "Older runs", typical durations, cancel from a card, and the
"Not enough credit" note with or without online top-ups."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run, utcnow
from runbase_web.services import billing, run_creation, runs, workspace
from tests.web import HTMX, balance_of


def make_run(app, user_id: int, prompt: str, **extra) -> str:
    with app.app_context():
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=user_id, api_key_id=None, model_id="local/test",
                                      raw_input={"prompt": prompt, **extra})
        db.session.commit()
        return run.id


def card_ids(html: str) -> list[str]:
    return re.findall(r'data-run-id="(run_[^"]+)"', html)


def test_the_page_renders_the_newest_runs_and_older_ones_page_in(app, signed_in, user):
    made = [make_run(app, user.id, f"run {n}") for n in range(workspace.PAGE_SIZE + 3)]
    page = signed_in.get("/playground").text
    shown = card_ids(page)
    assert shown == made[::-1][:workspace.PAGE_SIZE]
    older = re.search(r'hx-get="(/playground/runs/older\?after=[^"]+)"', page).group(1)
    fragment = signed_in.get(older.replace("&amp;", "&"), headers=HTMX).text
    assert card_ids(fragment) == made[::-1][workspace.PAGE_SIZE:]
    assert "Older runs" not in fragment
    # Without htmx the address is no page of its own.
    assert signed_in.get(older).status_code == 302


def test_signed_out_the_column_is_empty(client, app, user):
    make_run(app, user.id, "someone's")
    assert card_ids(client.get("/playground").text) == []


def test_older_page_of_another_accounts_cursor_is_not_found(app, signed_in, make_user):
    other = make_user("bob@example.com")
    theirs = make_run(app, other.id, "theirs")
    assert signed_in.get(f"/playground/runs/older?after={theirs}", headers=HTMX).status_code == 404


def test_typical_seconds_is_the_median_of_recent_successes(app, user):
    ids = {seconds: make_run(app, user.id, f"{seconds}s") for seconds in (2, 4, 30, 999)}
    with app.app_context():
        now = utcnow()
        for seconds, run_id in ids.items():
            if seconds == 999:  # failures don't count
                runs.mark_failed(db.session, run_id, message="no", code="provider_error")
            else:
                runs.mark_succeeded(db.session, run_id, [], public_url="")
            run = db.session.get(Run, run_id)
            run.created_at, run.completed_at = now - timedelta(seconds=seconds), now
        db.session.commit()
        assert workspace.typical_seconds(db.session, {"local/test", "local/sketch"}) == {
            "local/test": 4}


def test_cancel_from_the_card_uses_the_service_and_refunds(app, signed_in, user):
    run_id = make_run(app, user.id, "stop me", delay_ms=60_000)
    response = signed_in.post(f"/playground/runs/{run_id}/cancel", headers=HTMX)
    assert response.status_code == 200
    assert ">canceled<" in response.text and "refunded $0.0001" in response.text
    assert 'id="nav-balance"' in response.text
    assert balance_of(app, user.id) == 1_000_000
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert (run.status, run.error_code) == ("failed", "canceled")
    # Canceling an ended run changes nothing.
    again = signed_in.post(f"/playground/runs/{run_id}/cancel", headers=HTMX)
    assert again.status_code == 200 and balance_of(app, user.id) == 1_000_000


def leave(app, user_id: int, micros: int) -> None:
    with app.app_context():
        billing.operator_credit(db.session, user_id, micros - 1_000_000, adjust=True,
                                note="test")
        db.session.commit()


def test_not_enough_credit_without_top_ups_says_ask_the_administrator(app, signed_in, user):
    leave(app, user.id, 500)
    page = signed_in.get("/playground?model=local/sketch").text
    assert "Not enough credit" in page and "Ask the administrator of this server" in page
    price = signed_in.get("/playground/price", query_string={"model": "local/test"}).text
    assert "Not enough credit" not in price


@pytest.fixture
def app_config():
    return {}


@pytest.mark.parametrize("app_config", [{"STRIPE_SECRET_KEY": "sk_test_x",
                                         "STRIPE_WEBHOOK_SECRET": "whsec_x"}])
def test_not_enough_credit_with_top_ups_links_to_them(app, signed_in, user):
    leave(app, user.id, 500)
    price = signed_in.get("/playground/price", query_string={"model": "local/sketch"}).text
    assert "Not enough credit" in price and 'href="/settings/credits"' in price
    assert "administrator" not in price


def test_not_found_page_keeps_the_signed_in_navigation(signed_in):
    page = signed_in.get("/runs/run_doesnotexist")
    assert page.status_code == 404
    assert 'href="/runs"' in page.text and 'id="nav-balance"' in page.text


def test_run_page_is_titled_by_its_prompt_with_share_next_to_rerun(app, signed_in, user):
    run_id = make_run(app, user.id, "A <quiet> harbour at dawn")
    with app.app_context():
        runs.mark_succeeded(db.session, run_id, [], public_url="")
        db.session.commit()
    page = signed_in.get(f"/runs/{run_id}").text
    assert "<title>A &lt;quiet&gt; harbour at dawn · Runbase</title>" in page
    assert '<h1 class="run-title-prompt" data-run-title>A &lt;quiet&gt; harbour at dawn</h1>' in page
    start = page.index('class="run-actions"')
    head = page[start:page.index("</details>", start)]
    # A real Share control in the header, holding the share panel itself.
    assert "Rerun" in head and '<details id="share-menu"' in head
    assert 'data-share-panel' in head and "Create share link" in head
    assert page.count('id="share-panel"') == 1
    assert 'data-copy="A &lt;quiet&gt; harbour at dawn" data-copy-prompt>Copy prompt</button>' in page
    assert 'href="#run-input">Whole prompt' not in page  # short: all of it is in the title


def test_share_control_appears_in_the_header_when_the_run_succeeds(app, signed_in, user):
    run_id = make_run(app, user.id, "soon")
    page = signed_in.get(f"/runs/{run_id}").text
    assert '<span id="share-menu" hidden></span>' in page and "data-share-panel" not in page
    with app.app_context():
        runs.mark_succeeded(db.session, run_id, [], public_url="")
        db.session.commit()
    live = signed_in.get(f"/runs/{run_id}/live", headers={"HX-Request": "true"}).text
    assert '<details id="share-menu" class="share-menu" data-share-menu hx-swap-oob="true">' in live
