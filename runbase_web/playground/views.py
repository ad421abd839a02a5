"""Playground page and its htmx fragments: model form, price, run cards, restoring a
form (from a run, a reference image, a share link or a recipe), several models at once.

Runs are created through services.runs.create_run, the same path and ledger as the
API's POST /api/v1/runs; there is no Playground shortcut.
"""
from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import htmx, jsontext, state
from ..errors import RunbaseError
from ..extensions import db
from ..models import User
from ..services import runs
from ..catalog import ModelSpec
from ..presenters.forms import coerce_form, form_fields
from ..urls import public_base_url
from . import bp, multi, restore
from .presenters import (card_context, estimate, field_errors, form_context, input_values,
                         model_groups, posted_values)

#: A recipe is a model id and one form's input; larger bodies are refused unread.
MAX_RECIPE_BODY = 256 * 1024


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


def _user_id() -> int | None:
    return current_user.id if current_user.is_authenticated else None


def _fresh_balance() -> int:
    """The balance as the database has it now (charges are SQL updates the ORM didn't see)."""
    return db.session.get(User, current_user.id, populate_existing=True).balance_micros


def _requested_restore(args) -> restore.Restore | None:
    """The Restore asked for by ?from=, ?reference= or ?share=, or None."""
    session, catalog = db.session, state.catalog()
    if args.get("from"):
        return restore.from_run(session, catalog, _user_id(), args["from"])
    if args.get("reference"):
        return restore.as_reference(session, catalog, _env(), public_base_url(), _user_id(),
                                    args["reference"])
    if args.get("share"):
        return restore.from_share(session, catalog, args["share"])
    return None


def _restored_form(restored: restore.Restore | None, default: ModelSpec) -> dict:
    """The form context of a Restore (the default model's empty form if it failed)."""
    if restored is None or restored.spec is None:
        return form_context(default, _env(), catalog=state.catalog(),
                            notice=restored.notice if restored else None)
    spec = restored.spec
    return form_context(spec, _env(), values=input_values(spec, restored.input),
                        parent_id=restored.parent_id, seed_mode=restored.seed_mode,
                        catalog=state.catalog())


@bp.get("")
def page():
    """The Playground: model picker, the chosen model's form, and the run cards.

    ?from=<run id> restores one of your runs, ?reference=<run id> uses its first output
    as the reference image, ?share=<token> starts from a shared run.
    """
    context = _restored_form(_requested_restore(request.args), _spec(request.args.get("model")))
    return render_template("playground/page.html", groups=model_groups(state.catalog(), _env()),
                           **context)


@bp.get("/form")
def form():
    """The run form of one model, or restored from a run (htmx swaps it in)."""
    if not htmx.is_htmx():
        args = {key: request.args[key] for key in ("model", "from") if request.args.get(key)}
        return redirect(url_for(".page", **args))
    context = _restored_form(_requested_restore(request.args), _spec(request.args.get("model")))
    return htmx.vary_on_htmx(current_app.make_response(
        render_template("playground/_form.html", **context)))


@bp.post("/restore")
def restore_recipe():
    """The form described by a recipe read from a dropped PNG (field `recipe`, JSON).

    Answers 200 with the form, or 400 with a plain-text reason the page shows.
    """
    text = request.form.get("recipe", "")
    try:
        recipe = jsontext.loads_strict(text) if 0 < len(text) <= MAX_RECIPE_BODY else None
    except ValueError:  # UnsafeJson included: a recipe with unstorable text restores nothing
        recipe = None
    restored = restore.from_recipe(db.session, state.catalog(), _user_id(), recipe)
    if restored.spec is None:
        return restored.notice, 400, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template("playground/_form.html", **_restored_form(restored, restored.spec))


@bp.get("/price")
def price():
    """The price of the form as currently filled in (htmx fragment)."""
    micros, why_not = estimate(_spec(request.args.get("model")), request.args)
    return render_template("playground/_price.html", price_micros=micros, price_error=why_not)


@bp.get("/price/multi")
def multi_price():
    """Each picked model's price for the shared form, and the total (htmx fragment)."""
    if not request.args.get("multi"):
        return render_template("playground/_multi_price.html", lines=None, total=None, error=None)
    try:
        specs = multi.chosen_models(state.catalog(), request.args.getlist("models"))
    except multi.MultiRunError as error:
        return render_template("playground/_multi_price.html", lines=None, total=None,
                               error=error.message)
    lines, total = multi.prices(specs, request.args)
    return render_template("playground/_multi_price.html", lines=lines, total=total, error=None)


def _seed_control(mode: str | None):
    """How the seed control changes each model's typed input: "new" drops the seed (a
    random one is drawn), "keep" reuses the last seed when the field is empty."""
    remembered: list = []

    def apply(spec: ModelSpec, typed: dict) -> dict:
        if "seed" not in spec.properties or mode not in ("new", "keep"):
            return typed
        if mode == "new":
            typed.pop("seed", None)
        elif "seed" not in typed:
            if not remembered:
                remembered.append(restore.last_seed(db.session, current_user.id))
            if remembered[0] is not None:
                typed["seed"] = remembered[0]
        return typed
    return apply


def _parent_id() -> str | None:
    return request.form.get("parent_id") or None


@bp.post("/runs")
@login_required
def create_run():
    """Run the form: a new status card, or the form again with its errors (422).

    With "Multiple models" ticked, the form runs on every picked model instead.
    """
    if request.form.get("multi"):
        return create_runs()
    spec = _spec(request.form.get("model"))
    try:
        run = runs.create_run(db.session, catalog=state.catalog(), provider_env=_env(),
                              user_id=current_user.id, api_key_id=None, model_id=spec.id,
                              source="playground", parent_id=_parent_id(),
                              raw_input=_seed_control(request.form.get("seed_mode"))(
                                  spec, coerce_form(spec, request.form)))
        db.session.commit()
    except RunbaseError as error:
        db.session.rollback()
        return _invalid_form(spec, error)
    state.wake_worker()
    if not htmx.is_htmx():
        return redirect(url_for("web.run_page", run_id=run.id), 303)
    return _cards([run]), 201


@bp.post("/runs/multi")
@login_required
def create_runs():
    """Run the shared form on 2–4 models: one card per run, or nothing at all (422)."""
    spec = _spec(request.form.get("model"))
    catalog = state.catalog()
    try:
        specs = multi.chosen_models(catalog, request.form.getlist("models"))
        created = multi.create_runs(db.session, catalog=catalog, provider_env=_env(),
                                    user_id=current_user.id, specs=specs, form=request.form,
                                    input_for=_seed_control(request.form.get("seed_mode")),
                                    parent_id=_parent_id())
        db.session.commit()
    except multi.MultiRunError as error:
        db.session.rollback()
        return _invalid_form(spec, error, multi_errors=error.errors)
    state.wake_worker()
    if not htmx.is_htmx():
        return redirect(url_for("web.run_page", run_id=created[0].id), 303)
    return _cards(created), 201


def _cards(created: list) -> str:
    """New status cards, newest first like the list they join, and the new balance."""
    base_url, catalog = public_base_url(), state.catalog()
    cards = [card_context(run, catalog, base_url) for run in reversed(created)]
    return render_template("playground/_run_cards.html", cards=cards, balance=_fresh_balance())


def _invalid_form(spec: ModelSpec, error: RunbaseError, multi_errors: dict | None = None):
    """The form as submitted, errors by field, 422 (base.html's htmx config swaps 422
    responses over the form that sent them)."""
    context = form_context(
        spec, _env(), values=posted_values(spec, request.form),
        errors=field_errors(error, form_fields(spec)), form=request.form,
        parent_id=_parent_id(), seed_mode=request.form.get("seed_mode") or "new",
        catalog=state.catalog(),
        multi={"on": bool(request.form.get("multi")), "models": request.form.getlist("models"),
               "errors": multi_errors})
    if htmx.is_htmx():
        return render_template("playground/_form.html", **context), 422
    groups = model_groups(state.catalog(), _env())
    return render_template("playground/page.html", groups=groups, **context), 422


@bp.get("/runs/<run_id>")
def run_page(run_id: str):
    """Old address of a run's page: runs now have their own page at /runs/<id>."""
    return redirect(url_for("web.run_page", run_id=run_id), 302)


@bp.get("/runs/<run_id>/card")
@login_required
def run_card(run_id: str):
    """The status card fragment; it polls this URL while the run is active."""
    run = _own_run(run_id)
    if not htmx.is_htmx():
        return htmx.vary_on_htmx(redirect(url_for("web.run_page", run_id=run.id), 303))
    # A finished run may have been refunded: refresh the balance in the header too.
    balance = _fresh_balance() if run.is_finished else None
    body = render_template("playground/_run_card.html", balance=balance,
                           **card_context(run, state.catalog(), public_base_url()))
    return htmx.vary_on_htmx(current_app.make_response(body))


def _own_run(run_id: str):
    """The signed-in account's run; anyone else's is the 404 page (errors_web), like a missing one."""
    return runs.get_run(db.session, current_user.id, run_id)
