"""Runs gallery, run page (status, lineage, actions, copy as code) and compare.

Reruns go through the app's RunCreator, the same path and ledger as every run.
"""
from __future__ import annotations

import copy

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import htmx, state
from ..errors import RunbaseError, RunNotFound
from ..extensions import db, reads_only
from ..models import Run
from ..money import format_usd
from ..presenters.outputs import output_items, poster_src
from ..services import accounts, batches, history, runs, snippets
from ..urls import public_base_url
from .blueprint import bp


@bp.app_template_filter("input_value")
def input_value(value) -> str:
    """An input value as text (lists one item a line, a missing field as a dash)."""
    return history.display_value(value)


@bp.app_template_filter("run_thumbnail")
def run_thumbnail(run: Run):
    """The run's first output to show in a tile (a video as its poster still), or None."""
    first = history.thumbnail(run)
    if first is None:
        return None
    return {"src": first.src, "is_video": first.is_video, "poster": poster_src(first.src)}


def _own_run(run_id: str) -> Run:
    """The signed-in account's run; anyone else's is the 404 page (errors_web), like a missing one."""
    return runs.get_run(db.session, current_user.id, run_id)


# --- gallery ---------------------------------------------------------------------------------


#: Most "Load more" pages one gallery URL brings back at once (?pages=N).
MAX_PAGES = 20


def _page_count(raw: str | None) -> int:
    """?pages=N as a number of gallery pages, 1 when absent or not a number, at most MAX_PAGES."""
    try:
        return min(max(int(raw or 1), 1), MAX_PAGES)
    except ValueError:
        return 1


@bp.get("/runs")
@login_required
def runs_page():
    """Every run of the account, newest first, filtered; htmx gets just the tiles.

    "Load more" asks for the next page (?after=<cursor>&n=<its number>) and puts
    ?pages=<that number> in the address bar, which renders every page loaded so far: so
    Back from a run, or a reload, finds the gallery as long as it was, and the browser
    puts the scroll position back where it was."""
    filters = history.parse_filters(request.args)
    after = request.args.get("after")
    pages = _page_count(request.args.get("n" if after else "pages"))
    try:
        page, next_cursor = history.gallery_page(
            db.session, current_user.id, state.catalog(), filters, after=after,
            limit=history.PAGE_SIZE * (1 if after else pages))
    except RunNotFound:
        abort(404, description="That page of runs no longer exists; start from the first page.")
    context = {"runs": page, "filters": filters, "next_cursor": next_cursor,
               "first_page": not after, "page_number": pages}
    if htmx.is_htmx():
        return htmx.render_varying("web/runs/_page.html", **context)
    # The newest grids open the first, unfiltered page (batch_views has their pages).
    grids = batches.recent_batches(db.session, current_user.id) \
        if context["first_page"] and not filters.active else []
    return htmx.render_varying(
        "web/runs/page.html", models=history.used_models(db.session, current_user.id), grids=grids,
        statuses=history.STATUSES, kinds=history.KINDS, **context)


@bp.get("/runs/<run_id>/tile")
@reads_only
@login_required
def run_tile(run_id: str):
    """One gallery tile's body; an active run's tile polls this until the run ends."""
    run = _own_run(run_id)
    return htmx.fragment_or_redirect(url_for(".run_page", run_id=run.id),
                                     lambda: render_template("web/runs/_tile_body.html", run=run))


# --- one run ---------------------------------------------------------------------------------


def _live_context(run: Run) -> dict:
    """What the polled status part of the run page shows."""
    spec = state.catalog().get(run.model)
    return {"run": run, "spec": spec, "outputs": output_items(run, public_base_url()),
            "steps": history.status_history(run), "durations": history.durations(run),
            "kind": history.run_kind(run, state.catalog())}


@bp.get("/runs/<run_id>")
@login_required
def run_page(run_id: str):
    """One run: outputs, status history, input, lineage, actions and copy-as-code."""
    run = _own_run(run_id)
    family = history.lineage(db.session, run)
    base_url = public_base_url()
    context = _live_context(run)
    return render_template(
        "web/runs/run.html", lineage=family,
        changes=history.run_diff(family.parent, run) if family.parent else [],
        inputs=history.input_rows(run.input, context["spec"]),
        curl=snippets.curl_snippet(base_url, run.model, run.input),
        python=snippets.python_snippet(base_url, run.model, run.input), **context)


@bp.get("/runs/<run_id>/live")
@reads_only
@login_required
def run_live(run_id: str):
    """The run page's status part; it polls this every second while the run is active."""
    run = _own_run(run_id)

    def render():
        # A run that just failed was refunded: the header's balance changes too.
        balance = accounts.fresh_balance(db.session, current_user.id) if run.is_finished else None
        return render_template("web/runs/_live.html", balance=balance, **_live_context(run))
    return htmx.fragment_or_redirect(url_for(".run_page", run_id=run.id), render)


@bp.post("/runs/<run_id>/rerun")
@login_required
def rerun(run_id: str):
    """A new run with this run's model and input, made from it (lineage), paid as usual."""
    parent = _own_run(run_id)
    try:
        child = state.run_creator().create(
            db.session, user_id=current_user.id, model_id=parent.model,
            raw_input=copy.deepcopy(parent.input), source="playground", parent_id=parent.id)
    except RunbaseError as error:
        flash(f"Couldn't rerun: {error.message}", "error")
        return redirect(url_for(".run_page", run_id=parent.id), 303)
    db.session.commit()
    state.wake_worker()
    return redirect(url_for(".run_page", run_id=child.id), 303)


@bp.post("/runs/<run_id>/cancel")
@login_required
def cancel(run_id: str):
    """Cancel an active run (it fails as canceled and is refunded), then show it again."""
    run, canceled = runs.cancel_run(db.session, current_user.id, _own_run(run_id).id)
    db.session.commit()
    if canceled:
        state.wake_worker()  # it sends the webhook and stops the upstream job
        flash(f"Run canceled: refunded {format_usd(run.cost_micros)} to your balance.", "info")
    else:
        flash(f"The run had already {run.status}; nothing to cancel.", "info")
    return redirect(url_for(".run_page", run_id=run.id), 303)


# --- compare ---------------------------------------------------------------------------------


@bp.get("/runs/compare")
@login_required
def compare_runs():
    """2–4 of the account's runs side by side, differing input fields highlighted."""
    try:
        run_ids = history.parse_compare_ids(request.args.getlist("ids"))
    except history.CompareError as error:
        return render_template("web/runs/compare.html", error=str(error), runs=[], rows=[]), 400
    try:
        compared = history.compare_runs(db.session, current_user.id, run_ids)
    except RunNotFound:
        abort(404, description="One of these runs does not exist in your account.")
    base_url = public_base_url()
    return render_template("web/runs/compare.html", error=None, runs=compared,
                           outputs={run.id: output_items(run, base_url) for run in compared},
                           rows=history.compare_rows(compared))
