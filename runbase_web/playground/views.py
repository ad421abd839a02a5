"""Playground page and its htmx fragments: model form, price, run cards.

Runs are created through services.runs.create_run, the same path and ledger as the
API's POST /api/v1/runs; there is no Playground shortcut.
"""
from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import htmx, state
from ..errors import RunbaseError, RunNotFound
from ..extensions import db
from ..models import User
from ..services import runs
from ..services.catalog import ModelSpec, coerce_form, form_fields
from ..urls import public_base_url
from . import bp
from .presenters import (card_context, estimate, field_errors, form_context, model_groups,
                         posted_values)


def _env() -> dict:
    """The provider variables that are set: they decide which models are available."""
    return current_app.config["PROVIDER_ENV"]


def _spec(model_id: str | None) -> ModelSpec:
    """The catalog model named by the request, the first one when none is named; else 404."""
    catalog = state.catalog()
    spec = catalog.get(model_id) if model_id else catalog.all()[0]
    if spec is None:
        abort(404, description=f"There is no model '{model_id}' on this server.")
    return spec


def _fresh_balance() -> int:
    """The balance as the database has it now (charges are SQL updates the ORM didn't see)."""
    return db.session.get(User, current_user.id, populate_existing=True).balance_micros


@bp.get("")
def page():
    """The Playground: model picker, the chosen model's form, and the run cards."""
    spec = _spec(request.args.get("model"))
    return render_template("playground/page.html", groups=model_groups(state.catalog(), _env()),
                           **form_context(spec, _env()))


@bp.get("/form")
def form():
    """The run form of one model (htmx swaps it in when a model is picked)."""
    spec = _spec(request.args.get("model"))
    if not htmx.is_htmx():
        return redirect(url_for(".page", model=spec.id))
    return htmx.vary_on_htmx(current_app.make_response(
        render_template("playground/_form.html", **form_context(spec, _env()))))


@bp.get("/price")
def price():
    """The price of the form as currently filled in (htmx fragment)."""
    micros, why_not = estimate(_spec(request.args.get("model")), request.args)
    return render_template("playground/_price.html", price_micros=micros, price_error=why_not)


@bp.post("/runs")
@login_required
def create_run():
    """Run the form: a new status card, or the form again with its errors (422)."""
    spec = _spec(request.form.get("model"))
    try:
        run = runs.create_run(db.session, catalog=state.catalog(), provider_env=_env(),
                              user_id=current_user.id, api_key_id=None, model_id=spec.id,
                              source="playground",
                              raw_input=coerce_form(spec, request.form))
        db.session.commit()
    except RunbaseError as error:
        db.session.rollback()
        return _invalid_form(spec, error)
    state.wake_worker()
    if not htmx.is_htmx():
        return redirect(url_for(".run_page", run_id=run.id), 303)
    return render_template("playground/_run_card.html", balance=_fresh_balance(),
                           **card_context(run, state.catalog(), public_base_url())), 201


def _invalid_form(spec: ModelSpec, error: RunbaseError):
    """The form as submitted, errors by field, 422 (base.html's htmx config swaps 422
    responses over the form that sent them)."""
    context = form_context(spec, _env(), values=posted_values(spec, request.form),
                           errors=field_errors(error, form_fields(spec)), form=request.form)
    if htmx.is_htmx():
        return render_template("playground/_form.html", **context), 422
    groups = model_groups(state.catalog(), _env())
    return render_template("playground/page.html", groups=groups, **context), 422


@bp.get("/runs/<run_id>")
@login_required
def run_page(run_id: str):
    """One run as a page of its own (linked from the dashboard); the card polls as usual."""
    run = _own_run(run_id)
    return render_template("playground/run.html",
                           **card_context(run, state.catalog(), public_base_url()))


@bp.get("/runs/<run_id>/card")
@login_required
def run_card(run_id: str):
    """The status card fragment; it polls this URL while the run is active."""
    run = _own_run(run_id)
    if not htmx.is_htmx():
        return htmx.vary_on_htmx(redirect(url_for(".run_page", run_id=run.id), 303))
    # A finished run may have been refunded: refresh the balance in the header too.
    balance = _fresh_balance() if run.is_finished else None
    body = render_template("playground/_run_card.html", balance=balance,
                           **card_context(run, state.catalog(), public_base_url()))
    return htmx.vary_on_htmx(current_app.make_response(body))


def _own_run(run_id: str):
    """The signed-in account's run; anyone else's is a 404, like a missing one."""
    try:
        return runs.get_run(db.session, current_user.id, run_id)
    except RunNotFound:
        abort(404)
