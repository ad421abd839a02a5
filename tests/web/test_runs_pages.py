"""The runs pages over the test client: gallery (filters, search, pagination), run page
(status part, lineage, what changed, rerun, cancel, copy as code) and compare.

htmx endpoints are checked with and without `HX-Request`.
"""
from __future__ import annotations

import html
import json
import re
import shlex

import pytest
from sqlalchemy import select

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, Run, utcnow
from runbase_web.services import history, run_creation, runs
from tests.web import HTMX, balance_of, run_count, sign_in

#: local/test costs $0.0001 a run; local/sketch $0.001 an image; local/sketch-video $0.002 a second.
TEST_COST = 100


@pytest.fixture
def make_run(app):
    """Factory: a run of `user` created through the real service, then ended as asked."""
    def make(user, prompt: str = "a lighthouse", *, model: str = "local/test", status: str = "pending",
             source: str = "api", parent_id: str | None = None, **extra) -> str:
        with app.app_context():
            run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                          user_id=user.id, api_key_id=None, model_id=model,
                                          raw_input={"prompt": prompt, **extra}, source=source,
                                          parent_id=parent_id)
            db.session.commit()
            if status == "succeeded":
                ext = "mp4" if model.endswith("video") else "png"
                runs.mark_succeeded(db.session, run.id, [f"/files/generated/{run.id}.{ext}"], public_url="")
            elif status == "failed":
                runs.mark_failed(db.session, run.id, message="The provider said no.",
                                 code="provider_error")
            elif status == "processing":
                run.status = "processing"
                run.started_at = utcnow()
            db.session.commit()
            return run.id
    return make


def tile_ids(text: str) -> list[str]:
    """Run ids of the gallery tiles in `text`, in page order."""
    return re.findall(r'data-run-tile="(run_[a-z0-9]+)"', text)


def load_more_url(text: str) -> str | None:
    match = re.search(r'<div class="load-more" data-load-more>\s*<a class="btn" href="([^"]+)" hx-get="([^"]+)"', text)
    if not match:
        return None
    # htmx asks for the same page, saying which number it is (for the address it pushes).
    href, hx_get = html.unescape(match.group(1)), html.unescape(match.group(2))
    assert re.sub(r"&n=\d+", "", hx_get) == href and "&n=" in hx_get, (href, hx_get)
    return href


def get_run(app, run_id: str) -> Run:
    with app.app_context():
        return db.session.get(Run, run_id)


# --- gallery ------------------------------------------------------------------------------


def test_pages_need_sign_in(client, user, make_run):
    run_id = make_run(user)
    for url in ("/runs", f"/runs/{run_id}", f"/runs/compare?ids={run_id},{run_id}"):
        response = client.get(url)
        assert response.status_code == 302 and "/auth/login" in response.location


def test_gallery_lists_only_own_runs_newest_first(signed_in, user, make_user, make_run):
    other = make_user("bob@example.com")
    first = make_run(user, "my api run", source="api")
    second = make_run(user, "my playground run", source="playground", status="succeeded")
    theirs = make_run(other, "bob's secret prompt")
    page = signed_in.get("/runs")
    assert page.status_code == 200
    assert tile_ids(page.text) == [second, first]
    assert theirs not in page.text and "secret prompt" not in page.text
    assert "Playground" in page.text and ">API<" in page.text
    assert f'src="/files/generated/{second}.png"' in page.text
    assert page.headers["Vary"] == "HX-Request" or "HX-Request" in page.headers["Vary"]


def test_gallery_tiles_show_media_status_cost_and_poll_while_active(signed_in, user, make_run):
    video = make_run(user, "waves", model="local/sketch-video", status="succeeded", duration=2)
    failed = make_run(user, "broken", status="failed")
    pending = make_run(user, "waiting")
    text = signed_in.get("/runs").text
    video_tile = re.search(rf'<article class="run-tile" data-run-tile="{video}">.*?</article>', text, re.S).group(0)
    # A video's tile shows its poster still (no player), with a play mark.
    assert re.search(rf'<img src="/files/generated/{video}.mp4/poster" alt="Video made with local/sketch-video: waves"', video_tile)
    assert "thumb-play" in video_tile and "<video" not in video_tile
    assert "$0.004" in video_tile and "local/sketch-video" in video_tile
    failed_tile = re.search(rf'data-run-tile="{failed}">.*?</article>', text, re.S).group(0)
    assert "thumb-placeholder is-failed" in failed_tile and "refunded" in failed_tile
    assert "hx-trigger" not in failed_tile
    pending_tile = re.search(rf'data-run-tile="{pending}">.*?</article>', text, re.S).group(0)
    assert f'hx-get="/runs/{pending}/tile" hx-trigger="load delay:2s"' in pending_tile
    assert f'value="{pending}" data-compare-pick' in pending_tile


def test_tile_fragment(app, signed_in, user, make_run):
    run_id = make_run(user)
    plain = signed_in.get(f"/runs/{run_id}/tile")
    assert plain.status_code == 303 and plain.location.endswith(f"/runs/{run_id}")
    active = signed_in.get(f"/runs/{run_id}/tile", headers=HTMX)
    assert active.text.lstrip().startswith(f'<div id="tile-{run_id}"') and "hx-trigger" in active.text
    with app.app_context():
        runs.mark_succeeded(db.session, run_id, [f"/files/generated/{run_id}.png"], public_url="")
        db.session.commit()
    done = signed_in.get(f"/runs/{run_id}/tile", headers=HTMX)
    assert "hx-trigger" not in done.text and "<img" in done.text and "<html" not in done.text


def test_filters_by_model_status_and_kind(signed_in, user, make_run):
    test_ok = make_run(user, "t1", status="succeeded")
    test_failed = make_run(user, "t2", status="failed")
    sketch = make_run(user, "s1", model="local/sketch", status="succeeded")
    video = make_run(user, "v1", model="local/sketch-video", duration=1)

    assert tile_ids(signed_in.get("/runs?model=local/test").text) == [test_failed, test_ok]
    assert tile_ids(signed_in.get("/runs?status=succeeded").text) == [sketch, test_ok]
    assert tile_ids(signed_in.get("/runs?kind=video").text) == [video]
    assert tile_ids(signed_in.get("/runs?kind=image&status=failed").text) == [test_failed]
    # Unknown values mean "any", so a stale bookmark still opens.
    assert len(tile_ids(signed_in.get("/runs?status=bogus&kind=audio").text)) == 4
    empty = signed_in.get("/runs?model=local/sketch&status=failed").text
    assert tile_ids(empty) == [] and "No runs match these filters" in empty
    page = signed_in.get("/runs?model=local/sketch").text
    assert '<option value="local/sketch" selected>local/sketch</option>' in page
    assert '<option value="local/sketch-video">' in page


def test_empty_gallery_points_to_the_playground(signed_in):
    text = signed_in.get("/runs").text
    assert "No runs yet" in text and 'href="/playground"' in text


def test_search_is_case_insensitive_substring_of_the_prompt(signed_in, user, make_user, make_run):
    cat = make_run(user, "A Ginger CAT on a sofa")
    make_run(user, "a dog in the park")
    percent = make_run(user, "100% orange_juice")
    make_run(user, "100 oranges")
    make_run(make_user("bob@example.com"), "another cat")
    assert tile_ids(signed_in.get("/runs?q=cat").text) == [cat]
    assert tile_ids(signed_in.get("/runs?q=ginger+cat").text) == [cat]
    assert tile_ids(signed_in.get("/runs?q=%20sofa%20").text) == [cat]
    # % and _ are literal characters, not LIKE wildcards.
    assert tile_ids(signed_in.get("/runs?q=100%25").text) == [percent]
    assert tile_ids(signed_in.get("/runs?q=e_j").text) == [percent]
    assert tile_ids(signed_in.get("/runs?q=model").text) == []
    assert tile_ids(signed_in.get("/runs?q=cat&model=local/sketch").text) == []


def test_filter_form_uses_htmx_and_answers_with_the_gallery_only(signed_in, user, make_run):
    cat = make_run(user, "cat")
    make_run(user, "dog")
    page = signed_in.get("/runs").text
    form = re.search(r'<form class="card runs-filters"[^>]*>', page, re.S).group(0)
    assert 'method="get"' in form and 'hx-get="/runs"' in form
    assert 'hx-target="#runs-gallery"' in form and 'hx-push-url="true"' in form
    fragment = signed_in.get("/runs?q=cat&model=&status=&kind=", headers=HTMX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert tile_ids(fragment.text) == [cat]
    assert "HX-Request" in fragment.headers["Vary"]


def test_keyset_pagination_with_load_more(app, signed_in, user, make_run, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    made = [make_run(user, f"run {n}") for n in range(5)]
    newest_first = made[::-1]
    first = signed_in.get("/runs")
    assert tile_ids(first.text) == newest_first[:2]
    more = load_more_url(first.text)
    assert more == f"/runs?after={newest_first[1]}"
    # A run created meanwhile lands at the top and doesn't shift the next page.
    make_run(user, "newer")
    second = signed_in.get(more, headers=HTMX)
    assert "<html" not in second.text and tile_ids(second.text) == newest_first[2:4]
    third = signed_in.get(load_more_url(second.text), headers=HTMX)
    assert tile_ids(third.text) == newest_first[4:] and load_more_url(third.text) is None
    # Without JS the same link is a full page.
    plain = signed_in.get(more)
    assert "<html" in plain.text and tile_ids(plain.text) == newest_first[2:4]
    assert "Newest runs" in plain.text


def test_load_more_pushes_an_address_that_brings_back_every_page_loaded(app, signed_in, user,
                                                                        make_run, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    made = [make_run(user, f"cat {n}") for n in range(5)]
    newest_first = made[::-1]
    first = signed_in.get("/runs?q=cat").text
    assert 'hx-push-url="/runs?pages=2&amp;q=cat"' in first
    second = signed_in.get(f"/runs?after={newest_first[1]}&n=2&q=cat", headers=HTMX).text
    assert 'hx-push-url="/runs?pages=3&amp;q=cat"' in second
    assert f'hx-get="/runs?after={newest_first[3]}&amp;n=3&amp;q=cat"' in second
    # The pushed address, loaded as a page (Back, reload): both pages, then Load more.
    again = signed_in.get("/runs?pages=2&q=cat").text
    assert "<html" in again and tile_ids(again) == newest_first[:4]
    assert load_more_url(again) == f"/runs?after={newest_first[3]}&q=cat"
    assert "← Newest runs" not in again
    assert tile_ids(signed_in.get("/runs?pages=9").text) == newest_first
    assert tile_ids(signed_in.get("/runs?pages=nonsense").text) == newest_first[:2]


def test_load_more_keeps_the_filters(signed_in, user, make_run, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 1)
    cats = [make_run(user, f"cat {n}") for n in range(2)]
    make_run(user, "dog")
    first = signed_in.get("/runs?q=cat&status=pending")
    more = load_more_url(first.text)
    assert "q=cat" in more and "status=pending" in more
    second = signed_in.get(more, headers=HTMX)
    assert tile_ids(second.text) == [cats[0]] and load_more_url(second.text) is None


def test_foreign_cursor_is_404(signed_in, user, make_user, make_run):
    theirs = make_run(make_user("bob@example.com"))
    assert signed_in.get(f"/runs?after={theirs}").status_code == 404


# --- run page -------------------------------------------------------------------------------


def test_run_page_of_another_account_or_unknown_is_404(signed_in, make_user, make_run):
    theirs = make_run(make_user("bob@example.com"), "bob's prompt")
    for url in (f"/runs/{theirs}", "/runs/run_doesnotexist", f"/runs/{theirs}/live",
                f"/runs/{theirs}/tile"):
        response = signed_in.get(url, headers=HTMX if url.endswith(("live", "tile")) else {})
        assert response.status_code == 404, url
        assert "bob's prompt" not in response.text
    assert signed_in.post(f"/runs/{theirs}/rerun").status_code == 404
    assert signed_in.post(f"/runs/{theirs}/cancel").status_code == 404


def test_run_page_shows_outputs_input_model_cost_and_history(app, signed_in, user, make_run):
    run_id = make_run(user, "a red <b>kite</b>", model="local/sketch", status="processing",
                      num_images=2, aspect_ratio="16:9")
    with app.app_context():
        runs.mark_succeeded(db.session, run_id, [f"/files/generated/{run_id}-1.png",
                                                 f"/files/generated/{run_id}-2.png"], public_url="")
        db.session.commit()
    text = signed_in.get(f"/runs/{run_id}").text
    assert 'href="/models/local/sketch"' in text
    assert "$0.002" in text
    assert "a red &lt;b&gt;kite&lt;/b&gt;" in text and "<b>kite" not in text
    for n in (1, 2):
        src = f"/files/generated/{run_id}-{n}.png"
        assert f'<a class="output-zoom" href="{src}" target="_blank" rel="noopener" data-lightbox' in text
        # A download of the owner's file, under the prompt's words and the run id.
        download = f"/runs/{run_id}/outputs/{n - 1}/download"
        assert (f'href="{download}" download="a-red-b-kite-b-{run_id}-{n}.png" '
                f'aria-label="Download output {n}"') in text
        assert f'data-copy="http://localhost{src}"' in text
    table = re.search(r'<table class="table input-table">.*?</table>', text, re.S).group(0)
    assert re.search(r'data-field="aspect_ratio">.*?16:9', table, re.S)
    assert re.search(r'data-field="num_images">.*?<td class="value">2</td>', table, re.S)
    assert re.search(r'data-field="seed">.*?<td class="value">\d+</td>', table, re.S)
    assert [m for m in re.findall(r'data-step="(\w+)"', text)] == ["pending", "processing", "succeeded"]
    for label in ("Created", "Started", "Completed", "Queued", "Processing", "Total"):
        assert f"<dt>{label}</dt>" in text
    assert "hx-trigger" not in re.search(r'<section id="run-live"[^>]*>', text).group(0)
    assert f'href="/playground?reference={run_id}"' in text
    assert f'href="/playground?from={run_id}"' in text
    assert "Cancel run" not in text


def test_failed_run_shows_error_code_and_refund(signed_in, user, make_run):
    run_id = make_run(user, status="failed")
    text = signed_in.get(f"/runs/{run_id}").text
    assert "The provider said no." in text and "provider_error" in text
    assert "Refunded $0.0001 to your balance." in text
    assert "Use as reference" not in text
    assert re.findall(r'data-step="(\w+)"', text) == ["pending", "failed"]


def test_reference_only_for_succeeded_image_runs(signed_in, user, make_run):
    video = make_run(user, model="local/sketch-video", status="succeeded", duration=1)
    pending = make_run(user, model="local/sketch")
    for run_id in (video, pending):
        assert "?reference=" not in signed_in.get(f"/runs/{run_id}").text
    assert "<video src=" in signed_in.get(f"/runs/{video}").text


def test_status_part_polls_while_active(app, signed_in, user, make_run):
    run_id = make_run(user)
    page = signed_in.get(f"/runs/{run_id}").text
    root = re.search(r'<section id="run-live"[^>]*>', page).group(0)
    assert f'hx-get="/runs/{run_id}/live" hx-trigger="load delay:1s"' in root
    assert 'hx-swap="outerHTML"' in root and "Cancel run" in page
    plain = signed_in.get(f"/runs/{run_id}/live")
    assert plain.status_code == 303 and plain.location.endswith(f"/runs/{run_id}")
    fragment = signed_in.get(f"/runs/{run_id}/live", headers=HTMX)
    assert fragment.text.lstrip().startswith('<section id="run-live"') and "hx-trigger" in fragment.text
    assert "nav-balance" not in fragment.text
    with app.app_context():
        runs.mark_failed(db.session, run_id, message="nope", code="provider_error")
        db.session.commit()
    done = signed_in.get(f"/runs/{run_id}/live", headers=HTMX).text
    assert "hx-trigger" not in done and 'data-status="failed"' in done
    # Refunded: the header's balance chip is swapped out of band.
    assert '<a id="nav-balance"' in done and 'hx-swap-oob="true">$1.00</a>' in done


def test_copy_as_code_has_the_key_variable_and_the_exact_input(signed_in, user, make_run, app):
    run_id = make_run(user, 'quotes "double" and \'single\' & ünïcode', model="local/sketch",
                      aspect_ratio="3:4")
    text = signed_in.get(f"/runs/{run_id}").text
    stored = get_run(app, run_id).input
    curl = html.unescape(re.search(r'data-copy="([^"]*)" data-copy-snippet="curl"', text).group(1))
    python = html.unescape(re.search(r'data-copy="([^"]*)" data-copy-snippet="python"', text).group(1))
    assert '"Authorization: Bearer $RUNBASE_API_KEY"' in curl
    assert "curl -sS -X POST http://localhost/api/v1/runs" in curl
    # The -d body is single-quoted for the shell; unquote it the way a shell would.
    body = json.loads(shlex.split(curl.split(" -d ", 1)[1])[0])
    assert body == {"model": "local/sketch", "input": stored}
    assert "os.environ['RUNBASE_API_KEY']" in python and "BASE = 'http://localhost'" in python
    literal = re.search(r"json=(\{.*?\n\})\)\.json\(\)", python, re.S).group(1)
    assert eval(literal) == {"model": "local/sketch", "input": stored}  # noqa: S307 - our own output
    shown = html.unescape(re.search(r'<pre class="code" data-snippet="curl"[^>]*><code>(.*?)</code>', text, re.S).group(1))
    assert shown == curl


def test_run_page_renders_with_or_without_the_share_and_webhook_partials(signed_in, user, make_run):
    # They are included with `ignore missing`: present or not, the page must render.
    response = signed_in.get(f"/runs/{make_run(user)}")
    assert response.status_code == 200 and 'id="copy-as-code"' in response.text


# --- rerun, cancel ---------------------------------------------------------------------------


def test_rerun_creates_a_child_charged_once(app, signed_in, user, make_run):
    parent = make_run(user, "an owl", status="succeeded", delay_ms=5)
    before = balance_of(app, user.id)
    response = signed_in.post(f"/runs/{parent}/rerun")
    assert response.status_code == 303
    child_id = response.location.rsplit("/", 1)[1]
    assert response.location.endswith(f"/runs/{child_id}") and child_id != parent
    child, original = get_run(app, child_id), get_run(app, parent)
    assert child.parent_id == parent and child.source == "playground"
    assert child.model == original.model and child.input == original.input
    assert child.status == "pending" and child.api_key_id is None
    assert balance_of(app, user.id) == before - TEST_COST
    with app.app_context():
        charges = db.session.scalars(select(LedgerEntry).where(LedgerEntry.run_id == child_id)).all()
    assert [(c.kind, c.amount_micros) for c in charges] == [("charge", -TEST_COST)]

    child_page = signed_in.get(response.location).text
    parent_link = re.search(r'<div class="run-links" data-parent>.*?</a>', child_page, re.S).group(0)
    assert f'href="/runs/{parent}"' in parent_link and f'src="/files/generated/{parent}.png"' in parent_link
    assert "Same model and input as its parent" in child_page
    assert f'href="/runs/compare?ids={parent},{child_id}"' in child_page
    parent_page = signed_in.get(f"/runs/{parent}").text
    children = re.search(r'<div class="run-links" data-children>.*?</div>\s*</section>', parent_page, re.S).group(0)
    assert f'href="/runs/{child_id}"' in children and "Made from this run (1)" in parent_page


def test_rerun_without_balance_says_why_and_goes_back(app, client, make_user, make_run):
    poor = make_user("poor@example.com", credit_micros=4000)
    sign_in(client, poor.email)
    parent = make_run(poor, model="local/sketch", num_images=4)
    assert balance_of(app, poor.id) == 0
    count = run_count(app)
    response = client.post(f"/runs/{parent}/rerun", follow_redirects=True)
    assert response.request.path == f"/runs/{parent}"
    assert "Couldn&#39;t rerun: Your balance is too low for this run, which costs $0.004." in response.text
    assert run_count(app) == count and balance_of(app, poor.id) == 0


def test_cancel_active_run_refunds_it(app, signed_in, user, make_run):
    run_id = make_run(user, status="processing")
    before = balance_of(app, user.id)
    response = signed_in.post(f"/runs/{run_id}/cancel", follow_redirects=True)
    assert response.request.path == f"/runs/{run_id}"
    run = get_run(app, run_id)
    assert run.status == "failed" and run.error_code == "canceled"
    assert balance_of(app, user.id) == before + TEST_COST
    assert "Run canceled: refunded $0.0001 to your balance." in response.text
    assert "Canceled, refunded" in response.text and "Cancel run" not in response.text
    again = signed_in.post(f"/runs/{run_id}/cancel", follow_redirects=True)
    assert "already failed" in again.text and balance_of(app, user.id) == before + TEST_COST


def test_cancel_is_a_csrf_protected_form(app, signed_in, user, make_run):
    app.config["WTF_CSRF_ENABLED"] = True
    run_id = make_run(user)
    assert signed_in.post(f"/runs/{run_id}/cancel").status_code == 400
    assert signed_in.post(f"/runs/{run_id}/rerun").status_code == 400
    assert get_run(app, run_id).status == "pending"


# --- lineage and differences -------------------------------------------------------------------


def test_input_diff_rows():
    rows = history.input_diff({"prompt": "a cat", "seed": 1, "hd": True, "urls": ["a"]},
                              {"prompt": "a dog", "seed": 1, "hd": 1, "size": "2K", "urls": ["a"]})
    assert [(r.field, r.change, r.old, r.new) for r in rows] == [
        ("prompt", "changed", "a cat", "a dog"),
        ("hd", "changed", True, 1),
        ("size", "added", history.ABSENT, "2K"),
    ]
    removed = history.input_diff({"a": 1, "b": {"x": 1, "y": 2}}, {"b": {"y": 2, "x": 1}})
    assert [(r.field, r.change, r.old) for r in removed] == [("a", "removed", 1)]
    assert history.input_diff({"p": "x"}, {"p": "x"}) == []
    assert history.input_diff(None, {"p": "x"})[0].change == "added"


def test_what_changed_on_an_edited_child(app, signed_in, user, make_run):
    parent = make_run(user, "a cat", seed=7)
    child = make_run(user, "a cat in a hat", model="local/sketch", parent_id=parent, seed=7)
    with app.app_context():
        rows = history.run_diff(db.session.get(Run, parent), db.session.get(Run, child))
    assert [(r.field, r.change) for r in rows][:2] == [("model", "changed"), ("prompt", "changed")]
    assert ("delay_ms", "removed") in [(r.field, r.change) for r in rows]
    text = signed_in.get(f"/runs/{child}").text
    section = re.search(r'<section class="card what-changed".*?</section>', text, re.S).group(0)
    prompt_row = re.search(r'<tr class="diff-changed" data-diff-field="prompt".*?</tr>', section, re.S).group(0)
    assert ">a cat</td>" in prompt_row and ">a cat in a hat</td>" in prompt_row
    assert re.search(r'data-diff-field="model".*?local/test.*?local/sketch', section, re.S)
    assert 'data-diff-field="seed"' not in section
    assert 'data-diff-field="aspect_ratio" data-change="added"' in section


def test_lineage_never_shows_another_accounts_runs(app, signed_in, user, make_user, make_run):
    bob = make_user("bob@example.com")
    mine = make_run(user, "mine")
    with app.app_context():
        # Only reachable by hand-editing the database: create_run refuses foreign parents.
        run = run_creation.create_run(db.session, catalog=state.catalog(app), provider_env={},
                                      user_id=bob.id, api_key_id=None, model_id="local/test",
                                      raw_input={"prompt": "bob's child"})
        run.parent_id = mine
        db.session.commit()
    text = signed_in.get(f"/runs/{mine}").text
    assert "bob&#39;s child" not in text and "No related runs yet" in text


# --- compare -----------------------------------------------------------------------------------


def test_compare_needs_two_to_four_own_runs(signed_in, user, make_user, make_run):
    ids = [make_run(user, f"p{n}") for n in range(5)]
    theirs = make_run(make_user("bob@example.com"))
    one = signed_in.get(f"/runs/compare?ids={ids[0]}")
    assert one.status_code == 400 and "Choose at least 2 runs to compare (only one given)." in one.text
    none = signed_in.get("/runs/compare")
    assert none.status_code == 400 and "(none given)" in none.text
    dup = signed_in.get(f"/runs/compare?ids={ids[0]},{ids[0]}")
    assert dup.status_code == 400
    five = signed_in.get("/runs/compare?ids=" + ",".join(ids))
    assert five.status_code == 400 and "at most 4 runs at a time (5 given)" in five.text
    foreign = signed_in.get(f"/runs/compare?ids={ids[0]},{theirs}")
    assert foreign.status_code == 404
    assert signed_in.get(f"/runs/compare?ids={ids[0]},run_nope").status_code == 404
    four = signed_in.get("/runs/compare?ids=" + ",".join(ids[:4]))
    assert four.status_code == 200 and "compare-grid cols-4" in four.text


def test_compare_highlights_differing_fields(signed_in, user, make_run):
    a = make_run(user, "a cat", seed=1, outcome="succeed", status="succeeded")
    b = make_run(user, "a dog", seed=1, model="local/sketch", status="failed")
    # Repeated ids= (the gallery's checkboxes) work as well as ids=a,b.
    response = signed_in.get(f"/runs/compare?ids={a}&ids={b}")
    assert response.status_code == 200
    text = response.text
    assert re.findall(r'data-compare-run="(run_\w+)"', text) == [a, b]
    assert f'src="/files/generated/{a}.png"' in text and "The provider said no." in text
    differing = re.findall(r'<tr class="differs" data-differs data-field="(\w+)"', text)
    assert differing[:2] == ["model", "prompt"]
    assert set(differing) == {"model", "prompt", "delay_ms", "outcome", "aspect_ratio",
                              "resolution", "num_images"}
    assert '<tr data-field="seed">' in text
    outcome = re.search(r'data-field="outcome">.*?</tr>', text, re.S).group(0)
    assert re.findall(r'<td class="value">([^<]*)</td>', outcome) == ["succeed", "—"]


def test_compare_rows_unit():
    class R:  # the attributes compare_rows reads
        def __init__(self, model, run_input):
            self.model, self.input = model, run_input
    rows = history.compare_rows([R("m", {"p": "x", "n": 1}), R("m", {"p": "x", "n": 2}),
                                 R("m", {"p": "x", "n": 1, "extra": True})])
    assert [(r.field, r.differs) for r in rows] == [("model", False), ("p", False), ("n", True),
                                                    ("extra", True)]
    assert rows[3].values == [history.ABSENT, history.ABSENT, True]
