"""Playground page and its htmx fragments: model form, price, run cards, restoring a
form (from a run, a reference image, a share link or a recipe). Grids (one form over
axes of seeds, values, prompts or models) are grid_views'.

Runs are created through the app's RunCreator, the same path and ledger as the API's
POST /api/v1/runs; there is no Playground shortcut.
"""
from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict

from .. import htmx, jsontext, state
from ..catalog import ModelSpec
from ..errors import RunbaseError, RunNotFound
from ..auth.session import KEPT_DRAFT_KEY
from ..extensions import db, reads_only
from ..models import Run
from ..presenters.forms import coerce_form, form_fields
from ..presenters.run_form import estimate, form_context
from ..services import accounts, drafts, restore, runs, stripe_checkout, workspace
from ..urls import public_base_url
from . import grid
from .blueprint import bp
from .presenters import (can_reference, card_context, field_errors, input_values, picker,
                         posted_values)

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


@bp.app_context_processor
def _topups() -> dict:
    """Whether this server takes top-ups online: the form's "Not enough credit" note
    links to them, or tells the person to ask the administrator."""
    return {"topups_enabled": stripe_checkout.is_configured(current_app.config)}


def _user_id() -> int | None:
    return current_user.id if current_user.is_authenticated else None


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
    context = _draft_form() if request.args.get("draft") else None
    if context is None:
        context = _restored_form(_requested_restore(request.args), _spec(request.args.get("model")))
    return render_template("playground/page.html", **picker(state.catalog(), _env()),
                           **_workspace(), **context)


#: The browser session's key for the token of a form kept through sign-up (sign-in
#: starts a fresh session and carries this one key over).
DRAFT_KEY = KEPT_DRAFT_KEY


def _keep_for_later():
    """A visitor pressed Run: keep the form on the server, then offer sign-up (sign-in is
    one link away there) and come back to the filled form (?draft=1)."""
    spec = _spec(request.form.get("model"))
    form = {key: request.form.getlist(key) for key in request.form if key != "csrf_token"}
    token = drafts.save(current_app.config["DATA_DIR"], {"model": spec.id, "form": form})
    if token:
        session[DRAFT_KEY] = token
    target = url_for("auth.signup", next=url_for(".page", model=spec.id, draft=1))
    return htmx.hx_redirect(target) if htmx.is_htmx() else redirect(target, 303)


def _draft_form() -> dict | None:
    """The form kept by _keep_for_later, once, for the signed-in person who made it."""
    if not current_user.is_authenticated:
        return None
    draft = drafts.take(current_app.config["DATA_DIR"], session.pop(DRAFT_KEY, None))
    spec = state.catalog().get(draft.get("model")) if draft else None
    if spec is None or not isinstance(draft.get("form"), dict):
        return None
    form = MultiDict([(key, value) for key, values in draft["form"].items()
                      if isinstance(values, list) for value in values if isinstance(value, str)])
    context = form_context(spec, _env(), values=posted_values(spec, form), form=form,
                           parent_id=form.get("parent_id") or None,
                           seed_mode=form.get("seed_mode") or "new", catalog=state.catalog(),
                           notice="Your form is as you left it: press Run when you're ready.")
    # A grid comes back as it was set up too, with any problem Run would have said.
    context["grid"] = grid.read_plan(state.catalog(), spec, _env(), form)
    return context


def _workspace(after: str | None = None) -> dict:
    """The runs column: the signed-in account's runs newest first, one page after the
    cursor run `after`, and the cursor of the next older page (nothing when signed out).

    Rendered with every page load, so a reload, Back or signing in never empties it.
    """
    if not current_user.is_authenticated:
        return {"cards": [], "older": None}
    page_runs, older = workspace.recent_page(db.session, current_user.id, after=after)
    return {"cards": _card_contexts(page_runs), "older": older}


def _card_contexts(shown: list[Run]) -> list[dict]:
    """Card contexts of runs, with their models' typical durations for the active ones."""
    active = {run.model for run in shown if not run.is_finished}
    typical = workspace.typical_seconds(db.session, active) if active else {}
    base_url, catalog = public_base_url(), state.catalog()
    reference_ok = can_reference(catalog, _env(), restore.REFERENCE_FIELD)
    return [card_context(run, catalog, base_url, typical, reference_ok) for run in shown]


@bp.get("/runs/older")
@reads_only
@login_required
def older_runs():
    """The next page of older cards, and its own "Older runs" button (htmx fragment)."""
    def render():
        try:
            context = _workspace(request.args.get("after") or None)
        except RunNotFound:
            abort(404)
        return render_template("playground/_older_runs.html", **context)
    return htmx.fragment_or_redirect(url_for(".page"), render, redirect_status=302)


@bp.get("/form")
def form():
    """The run form of one model, or restored from a run (htmx swaps it in)."""
    def render():
        context = _restored_form(_requested_restore(request.args),
                                 _spec(request.args.get("model")))
        return render_template("playground/_form.html", **context)
    args = {key: request.args[key] for key in ("model", "from") if request.args.get(key)}
    return htmx.fragment_or_redirect(url_for(".page", **args), render, redirect_status=302)


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
    return render_template("playground/_price_value.html", price_micros=micros, price_error=why_not)


def _parent_id() -> str | None:
    return request.form.get("parent_id") or None


@bp.post("/runs")
def create_run():
    """Run the form: a new status card, or the form again with its errors (422).

    With "Grid" ticked, the form runs as a grid instead (grid_views.create_grid; a grid
    whose axis is the model runs one form on several models). A visitor who isn't
    signed in is sent to sign up, and the form is kept for them.
    """
    if not current_user.is_authenticated:
        return _keep_for_later()
    if request.form.get("grid"):
        # The grid's own view (grid_views.py, which imports this module, not the reverse).
        return current_app.view_functions["playground.create_grid"]()
    spec = _spec(request.form.get("model"))
    try:
        run = state.run_creator().create(
            db.session, user_id=current_user.id, model_id=spec.id,
            raw_input=coerce_form(spec, request.form), source="playground",
            parent_id=_parent_id(), seed_mode=request.form.get("seed_mode"))
    except RunbaseError as error:
        return _invalid_form(spec, error)
    db.session.commit()
    state.wake_worker()
    return _new_cards([run])


def _new_cards(created: list[Run]):
    """New status cards, newest first like the list they join, and the new balance (201);
    without htmx, the first new run's page."""
    def render():
        cards = _card_contexts(list(reversed(created)))
        balance = accounts.fresh_balance(db.session, current_user.id)
        return render_template("playground/_run_cards.html", cards=cards, balance=balance), 201
    return htmx.fragment_or_redirect(url_for("web.run_page", run_id=created[0].id), render)


def _invalid_form(spec: ModelSpec, error: RunbaseError):
    """The form as submitted, errors by field, 422 (base.html's htmx config swaps 422
    responses over the form that sent them)."""
    context = form_context(
        spec, _env(), values=posted_values(spec, request.form),
        errors=field_errors(error, form_fields(spec)), form=request.form,
        parent_id=_parent_id(), seed_mode=request.form.get("seed_mode") or "new",
        catalog=state.catalog())
    if htmx.is_htmx():
        return render_template("playground/_form.html", **context), 422
    return render_template("playground/page.html", **picker(state.catalog(), _env()),
                           **_workspace(), **context), 422


@bp.get("/runs/<run_id>")
def run_page(run_id: str):
    """Old address of a run's page: runs now have their own page at /runs/<id>."""
    return redirect(url_for("web.run_page", run_id=run_id), 302)


@bp.get("/runs/<run_id>/card")
@reads_only
@login_required
def run_card(run_id: str):
    """The status card fragment; it polls this URL while the run is active."""
    run = _own_run(run_id)

    def render():
        # A finished run may have been refunded: refresh the balance in the header too.
        balance = accounts.fresh_balance(db.session, current_user.id) if run.is_finished else None
        return render_template("playground/_run_card.html", balance=balance,
                               **_card_contexts([run])[0])
    return htmx.fragment_or_redirect(url_for("web.run_page", run_id=run.id), render)


@bp.post("/runs/<run_id>/cancel")
@login_required
def cancel_run(run_id: str):
    """Cancel an active run from its card, through the same service as the API's cancel
    (failed with errorCode canceled, refunded); answers the card as it now is."""
    run, canceled = runs.cancel_run(db.session, current_user.id, _own_run(run_id).id)
    db.session.commit()
    if canceled:
        state.wake_worker()  # it sends the webhook and stops the upstream job

    def render():
        balance = accounts.fresh_balance(db.session, current_user.id)
        return render_template("playground/_run_card.html", balance=balance,
                               **_card_contexts([run])[0])
    return htmx.fragment_or_redirect(url_for("web.run_page", run_id=run.id), render)


def _own_run(run_id: str):
    """The signed-in account's run; anyone else's is the 404 page (errors_web), like a missing one."""
    return runs.get_run(db.session, current_user.id, run_id)
