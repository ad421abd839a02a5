"""The Playground's "Grid" controls and their fragments: the axes (re-drawn when what an
axis changes is picked), the grid's price, and running it (a batch of runs, every one
or none, then its page). Reading the form is grid.py's; creating is services/batches'.
"""
from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from .. import htmx, state
from ..catalog import ModelSpec
from ..errors import RunbaseError
from ..extensions import db
from ..presenters.forms import form_fields
from ..presenters.run_form import form_context
from ..services import batches
from ..services.run_creation import ManyRunsRefused
from . import grid
from .blueprint import bp
from .presenters import FORM_ERROR, field_errors, picker, posted_values
from .views import _env, _keep_for_later, _spec, _workspace


def _plan(form, *, need_prompt: bool = False) -> tuple[ModelSpec, grid.GridPlan]:
    """The form's model and the grid it describes."""
    spec = _spec(form.get("model"))
    return spec, grid.read_plan(state.catalog(), spec, _env(), form, need_prompt=need_prompt)


@bp.app_template_global("grid_controls")
def grid_controls(spec: ModelSpec) -> grid.GridPlan:
    """The grid controls of a form drawn without a grid posted: off, nothing picked."""
    return grid.read_plan(state.catalog(), spec, current_app.config["PROVIDER_ENV"], {})


# The two fragments below are POSTs: the form's prompt variants travel with them, and
# prompts belong in neither URLs nor access logs (the single price leaves the prompt out).


@bp.post("/grid/axes/<name>")
def grid_axis(name: str):
    """One axis's values, for what it now changes (htmx fragment). The values typed for
    the other axis stay as they are in the page."""
    if name not in grid.AXES:
        abort(404)
    spec, plan = _plan(request.form)
    axis = plan.axes[name]
    # Problems are said when running or by the price; a half-filled axis is not one yet.
    axis.error = None
    return htmx.fragment_or_redirect(
        url_for(".page", model=spec.id),
        lambda: render_template("playground/_grid_axis.html", name=name, axis=axis),
        redirect_status=302)


@bp.post("/price/grid")
def grid_price():
    """How many runs the grid makes and their exact total, or what is missing (htmx
    fragment; it is asked only while "Grid" is on)."""
    _spec_, plan = _plan(request.form)
    price = grid.price(plan) if plan.ok else None
    return render_template("playground/_grid_price_value.html", grid=plan, price=price)


@bp.post("/runs/grid")
def create_grid():
    """Run the grid: a batch whose every cell is a run, all or none, then its page
    (htmx is told to load it); the form again with its errors otherwise (422)."""
    if not current_user.is_authenticated:
        return _keep_for_later()
    spec, plan = _plan(request.form, need_prompt=True)
    if not plan.ok:
        return _invalid_grid(spec, plan)
    try:
        batch, _runs = batches.create_batch(
            db.session, state.run_creator(), user_id=current_user.id, model_id=spec.id,
            axes=plan.axes_json(), cells=plan.grid_cells(),
            seed_mode=request.form.get("seed_mode") or "new")
    except ManyRunsRefused as error:
        return _invalid_grid(spec, plan, error)
    except RunbaseError as error:
        plan.error = error.message
        return _invalid_grid(spec, plan)
    db.session.commit()
    state.wake_worker()
    target = url_for("web.batch_page", batch_id=batch.id)
    return htmx.hx_redirect(target) if htmx.is_htmx() else redirect(target, 303)


def _invalid_grid(spec: ModelSpec, plan: grid.GridPlan, error: ManyRunsRefused | None = None):
    """The form as submitted with the grid's problems next to its controls, or a cell's
    problem next to the field it is about (a missing prompt is every cell's), 422."""
    errors: dict[str, str] = {}
    if error is not None:
        problems = {index: problem for index, problem in error.by_index.items()}
        first = next(iter(problems.values()), None)
        if first is not None:
            cell_errors = field_errors(first, form_fields(spec))
            # Next to the field only when every cell has that field wrong (an empty
            # prompt); a problem of some cells is said by the grid, naming the cell.
            everywhere = len(problems) == len(plan.cells) and len(
                {p.field for p in problems.values()}) == 1
            if FORM_ERROR in cell_errors or not everywhere:
                plan.error = _cell_problem(plan, problems)
            else:
                errors = cell_errors
        else:
            plan.error = error.message  # the balance: "Your balance is too low for these …"
    context = form_context(spec, _env(), values=posted_values(spec, request.form),
                           errors=errors, form=request.form,
                           seed_mode=request.form.get("seed_mode") or "new",
                           catalog=state.catalog())
    if htmx.is_htmx():
        return render_template("playground/_form.html", grid=plan, **context), 422
    return render_template("playground/page.html", **picker(state.catalog(), _env()),
                           **_workspace(), grid=plan, **context), 422


def _cell_problem(plan: grid.GridPlan, problems: dict[int, RunbaseError]) -> str:
    """The first refused cell's problem, saying which cell: "Column 16:9, row 2: …"."""
    index, problem = next(iter(problems.items()))
    row, col, _spec_, _form = plan.cells[index]
    x, y = plan.axes["x"], plan.axes["y"]
    where = f"{x.option.label} {x.values[col]}"
    if y.option is not None:
        where += f", {y.option.label} {y.values[row]}"
    more = f" ({len(problems) - 1} more cells too)" if len(problems) > 1 else ""
    return f"Nothing was run. {where}: {problem.message}{more}"
