"""Grids: a grid's page (its runs as live cards under their row and column values),
re-running it, and sharing it as a whole under one revocable link whose public page
shows every cell, prompts hidden if the owner chose so.

The public side shows outputs, models and (unless hidden) prompts: never the owner or
run ids. Its files are served through the token, as copies without metadata, like a
shared run's (share_views.py, which also sets the link pages' privacy headers).
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import htmx, state
from ..errors import RunbaseError
from ..extensions import db, reads_only
from ..files_web import stored_file_or_404
from ..models import Batch, Run
from ..playground.presenters import can_reference, card_context
from ..services import batches, files, restore, workspace
from ..services.run_creation import ManyRunsRefused
from ..urls import absolute_url, public_base_url
from .blueprint import bp
from .share_views import public_file_response

def _own_batch(batch_id: str) -> Batch:
    """The signed-in account's grid; anyone else's is a 404 like a missing one."""
    try:
        return batches.get_batch(db.session, current_user.id, batch_id)
    except batches.BatchNotFound:
        abort(404, description="There is no grid with this id in your account.")


def _axis_label(axes: dict, name: str) -> str | None:
    """An axis's name as the headers show it (a replaced word says which word)."""
    axis = axes.get(name)
    if not axis:
        return None
    if axis.get("kind") == "replace" and axis.get("word"):
        return f"“{axis['word']}” replaced by"
    return axis.get("label")


def _grid_context(batch: Batch, runs: list[Run], axes: dict) -> dict:
    """What a grid page shows besides its cells: labels, counts, money."""
    columns, rows = batches.layout(axes, runs)
    finished = sum(1 for run in runs if run.is_finished)
    charged = sum(run.cost_micros for run in runs if not run.refunded)
    refunded = sum(run.cost_micros for run in runs if run.refunded)
    return {"batch": batch, "columns": columns, "rows": rows, "runs": runs,
            "x_label": _axis_label(axes, "x"), "y_label": _axis_label(axes, "y"),
            "finished": finished, "charged": charged, "refunded": refunded}


@bp.get("/grids/<batch_id>")
@login_required
def batch_page(batch_id: str):
    """One grid: row and column headers with their values, each cell its run's live card."""
    batch = _own_batch(batch_id)
    runs = batches.batch_runs(db.session, batch)
    catalog, base_url = state.catalog(), public_base_url()
    active = {run.model for run in runs if not run.is_finished}
    typical = workspace.typical_seconds(db.session, active) if active else {}
    reference_ok = can_reference(catalog, current_app.config["PROVIDER_ENV"],
                                 restore.REFERENCE_FIELD)
    cards = {run.id: card_context(run, catalog, base_url, typical, reference_ok) for run in runs}
    return render_template("web/batches/page.html", cards=cards,
                           **_grid_context(batch, runs, batch.axes or {}))


@bp.post("/grids/<batch_id>/rerun")
@login_required
def rerun_batch(batch_id: str):
    """A new grid with the same axes and cells, each made from the old cell; all or none."""
    batch = _own_batch(batch_id)
    try:
        new, _runs = batches.rerun_batch(db.session, state.run_creator(), current_user.id, batch.id)
    except ManyRunsRefused as error:
        message = error.message if not error.by_index else next(iter(error.by_index.values())).message
        flash(f"Couldn't run the grid again: {message}", "error")
        return redirect(url_for(".batch_page", batch_id=batch.id), 303)
    except RunbaseError as error:
        flash(f"Couldn't run the grid again: {error.message}", "error")
        return redirect(url_for(".batch_page", batch_id=batch.id), 303)
    db.session.commit()
    state.wake_worker()
    return redirect(url_for(".batch_page", batch_id=new.id), 303)


# --- sharing: the owner's actions -----------------------------------------------------------


@bp.app_template_global("batch_share_url")
def batch_share_url(batch: Batch) -> str | None:
    """The absolute public link of a shared grid, or None when it is not shared."""
    if not batch.share_token:
        return None
    return absolute_url(public_base_url(), url_for("web.shared_batch", token=batch.share_token))


def _panel(batch: Batch):
    """The share panel after an action: the fragment for htmx, the grid page otherwise."""
    return htmx.fragment_or_redirect(
        url_for(".batch_page", batch_id=batch.id),
        lambda: render_template("web/batches/_share.html", batch=batch))


@bp.post("/grids/<batch_id>/share")
@login_required
def share_batch(batch_id: str):
    """Share the grid (one new unguessable link), or change whether its prompts show."""
    hide_prompt = request.form.get("hide_prompt", "") not in ("", "0", "false", "off")
    batch = batches.share_batch(db.session, current_user.id, _own_batch(batch_id).id,
                                hide_prompt=hide_prompt)
    db.session.commit()
    return _panel(batch)


@bp.post("/grids/<batch_id>/share/revoke")
@login_required
def revoke_batch_share(batch_id: str):
    """Stop sharing: the link answers 404; sharing again makes a new link."""
    batch = batches.revoke_batch_share(db.session, current_user.id, _own_batch(batch_id).id)
    db.session.commit()
    return _panel(batch)


# --- the public page -----------------------------------------------------------------------


def _shared_or_404(token: str) -> Batch:
    batch = batches.find_shared_batch(db.session, token)
    if batch is None:
        abort(404, description="This link is not shared (any more).")
    return batch


@bp.get("/g/<token>")
@reads_only
def shared_batch(token: str):
    """The public page of a shared grid: every cell's outputs under its row and column."""
    batch = _shared_or_404(token)
    runs = batches.batch_runs(db.session, batch)
    catalog = state.catalog()
    cells = {}
    for run in runs:
        spec = catalog.get(run.model)
        outputs = []
        if batches.shared_output_ok(run):
            for index, path in enumerate(run.output_urls or []):
                outputs.append({"src": url_for(".shared_batch_output", token=token,
                                               row=run.batch_row or 0, col=run.batch_col or 0,
                                               index=index),
                                "is_video": files.is_video(path)})
        cells[run.id] = {"outputs": outputs, "prompt": batches.shared_prompt(batch, run),
                         "model_name": spec.name if spec is not None else run.model}
    return render_template("web/batches/shared.html", cells=cells,
                           **_grid_context(batch, runs, batches.shared_axes(batch)))


@bp.get("/g/<token>/cells/<int:row>/<int:col>/outputs/<int:index>")
@reads_only
def shared_batch_output(token: str, row: int, col: int, index: int):
    """One output of a shared grid's cell: images as copies without any metadata (PNGs
    then with a recipe pointing at the grid's page), videos as stored."""
    batch = _shared_or_404(token)
    run = next((run for run in batches.batch_runs(db.session, batch)
                if (run.batch_row or 0, run.batch_col or 0) == (row, col)), None)
    if run is None or not batches.shared_output_ok(run) or index >= len(run.output_urls or []):
        abort(404)
    row_file = stored_file_or_404(run.output_urls[index].removeprefix(files.URL_PREFIX))
    page_url = absolute_url(public_base_url(), url_for(".shared_batch", token=batch.share_token))
    return public_file_response(row_file, model=run.model,
                                shown_input=batches.shared_input(batch, run), page_url=page_url)
