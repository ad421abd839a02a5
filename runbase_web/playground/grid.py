"""The Playground's "Grid": one form run over one or two axes (columns x, rows y).

An axis is what changes from cell to cell: seeds (a list, or "N random"), one of the
model's choice fields (values picked), a number field (a list), prompt variants (one per
line), a word of the prompt replaced by others, or the model itself (several models of
one kind: what "Multiple models" used to be). This module reads the form into a plan:
the axes as the grid page labels them, every cell's model and form, each axis's problem
in words, and prices. Creating the runs, every one or none, is services/batches.py's.

Presentation only: no database, no request. Views pass in what they read.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from werkzeug.datastructures import MultiDict

from ..catalog import Catalog, InputError, ModelSpec, validate_input
from ..presenters.forms import coerce_form, form_fields
from ..presenters.run_form import estimate
from ..services.batches import MAX_CELLS, GridCell
from ..services.run_creation import MAX_SEED

AXES = ("x", "y")
#: Words for each axis in the form and in errors.
AXIS_NAMES = {"x": "Columns", "y": "Rows"}
_RANDOM = re.compile(r"^\s*(\d{1,2})\s+random\s*$", re.I)
_SPLIT = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class AxisOption:
    """One entry of an axis's "what changes" menu; `value` is what the form sends."""

    value: str
    label: str
    #: "seed", "field", "prompt", "replace" or "model".
    kind: str
    #: The field's name for "field" axes.
    name: str = ""
    #: The values to pick from, for choice fields and models (else typed as a list).
    choices: tuple[str, ...] = ()
    #: Number fields: "integer" or "number".
    number: str = ""


@dataclass
class AxisState:
    """What one axis holds as the form was filled in: the option picked, the typed
    values, the picked values, the word to replace, and its problem if any."""

    option: AxisOption | None = None
    text: str = ""
    picks: list[str] = field(default_factory=list)
    word: str = ""
    error: str | None = None
    #: The parsed values, as the headers show them.
    values: list[str] = field(default_factory=list)


@dataclass
class GridPlan:
    """The grid a form describes: axes, cells, and what is wrong with it."""

    on: bool
    options: list[AxisOption]
    axes: dict[str, AxisState]
    #: A problem of the grid as a whole (too many runs, no axis), shown by its controls.
    error: str | None = None
    #: (row, col, model spec, the cell's form) for every cell, rows first.
    cells: list[tuple[int, int, ModelSpec, MultiDict]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the grid can be priced and run: no problem anywhere."""
        return self.on and not self.error and not any(a.error for a in self.axes.values()) \
            and bool(self.cells)

    def axes_json(self) -> dict[str, Any]:
        """The axes as the batch stores them (labels and the values as headers show them)."""
        stored: dict[str, Any] = {}
        for name in AXES:
            state = self.axes[name]
            option = state.option
            stored[name] = None if option is None else {
                "kind": option.kind, "name": option.name, "label": option.label,
                "values": list(state.values),
                **({"word": state.word} if option.kind == "replace" else {})}
        return stored

    def grid_cells(self) -> list[GridCell]:
        """The cells as the batch service takes them: typed input for each model."""
        return [GridCell(row, col, spec.id, coerce_form(spec, form))
                for row, col, spec, form in self.cells]


def axis_options(catalog: Catalog, spec: ModelSpec, env: Mapping[str, str]) -> list[AxisOption]:
    """What an axis of this model's form may change."""
    options = []
    if "seed" in spec.properties:
        options.append(AxisOption("seed", "Seed", "seed"))
    for f in form_fields(spec):
        if f.name in ("prompt", "seed"):
            continue
        prop = spec.properties[f.name]
        if f.widget == "select":
            options.append(AxisOption(f"f:{f.name}", f.label, "field", f.name, f.options))
        elif f.widget == "number":
            options.append(AxisOption(f"f:{f.name}", f.label, "field", f.name,
                                      number=prop.get("type", "number")))
    if "prompt" in spec.properties:
        options.append(AxisOption("prompt", "Prompt variants", "prompt"))
        options.append(AxisOption("replace", "Replace a word in the prompt", "replace"))
    models = tuple(other.id for other in catalog.all()
                   if other.kind == spec.kind and other.is_available(env))
    if len(models) > 1:
        options.append(AxisOption("model", "Model", "model", choices=models))
    return options


def _values(form: Mapping, key: str) -> list[str]:
    """All values a form holds for `key` (a MultiDict's list, or one plain value)."""
    if hasattr(form, "getlist"):
        return [v for v in form.getlist(key) if isinstance(v, str)]
    value = form.get(key)
    return [value] if isinstance(value, str) else []


def read_plan(catalog: Catalog, spec: ModelSpec, env: Mapping[str, str], form: Mapping, *,
              need_prompt: bool = False) -> GridPlan:
    """The grid the form describes. `need_prompt`: check that a replaced word is in the
    prompt (when running; the price request leaves the prompt out)."""
    options = axis_options(catalog, spec, env)
    by_value = {option.value: option for option in options}
    on = bool(_values(form, "grid")) and _values(form, "grid")[0] not in ("", "0")
    axes = {}
    for name in AXES:
        picked = (_values(form, f"grid_{name}") or [""])[0]
        axes[name] = AxisState(option=by_value.get(picked),
                               text=(_values(form, f"grid_{name}_values") or [""])[0][:20_000],
                               picks=_values(form, f"grid_{name}_pick")[:100],
                               word=(_values(form, f"grid_{name}_word") or [""])[0][:200])
        if picked and axes[name].option is None:
            axes[name].error = "This model has no such setting."
    plan = GridPlan(on=on, options=options, axes=axes)
    if not on:
        return plan
    x, y = axes["x"], axes["y"]
    if x.option is None and not x.error:
        x.error = "Pick what changes from column to column."
    if y.option is not None and x.option is not None and y.option.value == x.option.value:
        y.error = "Rows must change something other than the columns."
    prompt = (_values(form, "prompt") or [""])[0]
    for state in (x, y):
        if state.option is not None and not state.error:
            _parse_axis(state, prompt if need_prompt else None)
    _check_models_have(catalog, x, y)
    if any(state.error for state in axes.values()):
        return plan
    count = len(x.values) * (len(y.values) if y.option is not None else 1)
    if count > MAX_CELLS:
        plan.error = (f"A grid makes at most {MAX_CELLS} runs; this one would make {count}. "
                      "Take some values out.")
        return plan
    plan.cells = _cells(catalog, spec, form, x, y if y.option is not None else None)
    return plan


def _check_models_have(catalog: Catalog, x: AxisState, y: AxisState) -> None:
    """With a model axis, the other axis must change a field every picked model has:
    otherwise that model's cells would all be the same run."""
    models = next((s for s in (x, y) if s.option and s.option.kind == "model" and not s.error), None)
    other = y if models is x else x
    if models is None or other.option is None or other.error or other.option.kind not in ("seed", "field"):
        return
    name = "seed" if other.option.kind == "seed" else other.option.name
    lacking = [model_id for model_id in models.values
               if name not in getattr(catalog.get(model_id), "properties", {})]
    if lacking:
        other.error = f"{lacking[0]} has no {other.option.label}: pick models that all have it."


def _parse_axis(state: AxisState, prompt: str | None) -> None:
    """Fill state.values from what was typed or picked, or state.error."""
    option = state.option
    if option.kind == "seed":
        _parse_seeds(state)
    elif option.kind == "model" or option.choices:
        picks = [value for value in dict.fromkeys(state.picks) if value in option.choices]
        if not picks:
            state.error = f"Pick at least one {'model' if option.kind == 'model' else 'value'}."
        state.values = picks
    elif option.kind == "field":
        _parse_numbers(state)
    else:
        lines = list(dict.fromkeys(line.strip() for line in state.text.splitlines() if line.strip()))
        if not lines:
            state.error = ("Type one prompt per line." if option.kind == "prompt"
                           else "Type the words to put in its place, one per line.")
        elif option.kind == "replace":
            if not state.word.strip():
                state.error = "Type the word of the prompt to replace."
            elif prompt is not None and state.word.strip() not in prompt:
                state.error = f"The prompt has no “{state.word.strip()}” to replace."
        state.word = state.word.strip()
        state.values = lines
    if len(state.values) > MAX_CELLS and not state.error:
        state.error = f"At most {MAX_CELLS} values."


def _parse_seeds(state: AxisState) -> None:
    """Seeds: a list of whole numbers, or "N random" (drawn now, shown in the headers)."""
    text = state.text.strip()
    random = _RANDOM.match(text)
    if random:
        count = int(random.group(1))
        if not 1 <= count <= MAX_CELLS:
            state.error = f"Between 1 and {MAX_CELLS} random seeds."
            return
        state.values = [str(secrets.randbelow(MAX_SEED + 1)) for _ in range(count)]
        return
    words = [word for word in _SPLIT.split(text) if word]
    if not words:
        state.error = "Type seeds (e.g. 1, 2, 3) or “4 random”."
        return
    bad = [word for word in words if not word.isdigit() or int(word) > MAX_SEED]
    if bad:
        state.error = f"“{bad[0][:40]}” is not a seed: whole numbers from 0 to {MAX_SEED}."
        return
    state.values = list(dict.fromkeys(str(int(word)) for word in words))


def _parse_numbers(state: AxisState) -> None:
    """A number field's values: a list, each a valid value of the field's type."""
    words = [word for word in _SPLIT.split(state.text.strip()) if word]
    if not words:
        state.error = "Type the values, e.g. 1, 2, 4."
        return
    values = []
    for word in words:
        try:
            number = float(word) if state.option.number == "number" else int(word)
        except ValueError:
            state.error = f"“{word[:40]}” is not {'a whole number' if state.option.number == 'integer' else 'a number'}."
            return
        if number != number or number in (float("inf"), float("-inf")):
            state.error = f"“{word[:40]}” is not a number."
            return
        values.append(str(int(number)) if float(number).is_integer() else str(number))
    state.values = list(dict.fromkeys(values))


def _cells(catalog: Catalog, spec: ModelSpec, form: Mapping, x: AxisState,
           y: AxisState | None) -> list[tuple[int, int, ModelSpec, MultiDict]]:
    """Every cell's model and form: the base form with the row's and column's values."""
    base = MultiDict([(key, value) for key in form for value in _values(form, key)
                      if not key.startswith("grid")])
    cells = []
    for row, row_value in enumerate(y.values if y is not None else [None]):
        for col, col_value in enumerate(x.values):
            cell_spec, cell_form = spec, base.copy()
            # Rows first, then columns; a prompt axis before a word replaced in it.
            changes = [(y, row_value), (x, col_value)] if y is not None else [(x, col_value)]
            changes.sort(key=lambda change: change[0].option.kind == "replace")
            for state, value in changes:
                cell_spec = _apply(catalog, cell_spec, cell_form, state, value)
            cells.append((row, col, cell_spec, cell_form))
    return cells


def _apply(catalog: Catalog, spec: ModelSpec, form: MultiDict, state: AxisState,
           value: str) -> ModelSpec:
    """Change one cell's form by one axis value; returns the cell's model."""
    option = state.option
    if option.kind == "model":
        return catalog.get(value) or spec
    if option.kind == "seed":
        form.setlist("seed", [value])
    elif option.kind == "field":
        form.setlist(option.name, [value])
    elif option.kind == "prompt":
        form.setlist("prompt", [value])
    elif option.kind == "replace":
        prompt = form.get("prompt", "")
        form.setlist("prompt", [prompt.replace(state.word, value)])
    return spec


@dataclass(frozen=True)
class GridPrice:
    """The grid's price: how many runs, the exact total, or why there is none."""

    runs: int
    total: int | None
    error: str | None


def price(plan: GridPlan) -> GridPrice:
    """The total of every cell's price (each cell priced as its own run would be), or
    the first cell's problem: a total is never one that can't be charged."""
    total, problem = 0, None
    for _row, _col, spec, form in plan.cells:
        micros, error = estimate(spec, form)
        error = error or _shared_problem(spec, form)
        if error:
            problem = problem or f"{spec.id}: {error}"
            continue
        total += micros
    return GridPrice(len(plan.cells), None if problem else total, problem)


def _shared_problem(spec: ModelSpec, form: Mapping) -> str | None:
    """What is wrong with the fields this cell's model takes from the form, prompt aside
    (the price request leaves it out; an empty prompt is reported when running)."""
    data = coerce_form(spec, form)
    data.pop("prompt", None)
    relaxed = replace(spec, input_schema={**spec.input_schema, "required": []})
    try:
        validate_input(relaxed, data)
    except InputError as error:
        labels = {f.name: f.label for f in form_fields(spec)}
        name = (error.field or "").partition(".")[0]
        return f"{labels.get(name, name)} {error.message}".strip()
    return None
