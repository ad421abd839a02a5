"""Run one form on several models at once: which models, each one's price and input,
and each one's problem in words. The form is shared: each model takes the fields it has
and ignores the rest. Creating the runs, every one or none, is RunCreator.create_many's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from ..catalog import Catalog, InputError, ModelSpec, validate_input
from ..errors import RunbaseError
from ..presenters.forms import coerce_form, form_fields
from ..presenters.run_form import estimate
from .presenters import FORM_ERROR, field_errors

MIN_MODELS, MAX_MODELS = 2, 4


class MultiRunError(RunbaseError):
    """The models picked can't be run together: too few, too many, unknown, mixed kinds."""


@dataclass(frozen=True)
class ModelPrice:
    """One model's line of the multi-model price: micros, or why there is none."""

    spec: ModelSpec
    micros: int | None
    error: str | None


def chosen_models(catalog: Catalog, model_ids: list[str]) -> list[ModelSpec]:
    """The picked models, in the order picked; 2 to 4 distinct ones of one kind.

    Raises MultiRunError naming the problem otherwise.
    """
    ids = list(dict.fromkeys(model_ids))
    if not MIN_MODELS <= len(ids) <= MAX_MODELS:
        raise MultiRunError(f"Pick {MIN_MODELS} to {MAX_MODELS} models to run this on.")
    specs = [catalog.get(model_id) for model_id in ids]
    unknown = [model_id for model_id, spec in zip(ids, specs) if spec is None]
    if unknown:
        raise MultiRunError(f"Model '{unknown[0][:200]}' does not exist on this server.")
    if len({spec.kind for spec in specs}) > 1:
        raise MultiRunError("Pick models of one kind: all images or all videos.")
    return specs


def prices(specs: list[ModelSpec], form: Mapping) -> tuple[list[ModelPrice], int | None]:
    """Each model's price for the shared form, and the total (None while any model's
    share of the form is invalid, so the total is never one that can't be charged)."""
    lines = []
    for spec in specs:
        micros, error = estimate(spec, form)
        lines.append(ModelPrice(spec, micros, error or _shared_problem(spec, form)))
    total = None if any(line.error or line.micros is None for line in lines) else sum(
        line.micros for line in lines)
    return lines, total


def _shared_problem(spec: ModelSpec, form: Mapping) -> str | None:
    """What is wrong with the fields this model takes from the form, prompt aside (the
    price request leaves it out, and an empty prompt is reported when running)."""
    data = coerce_form(spec, form)
    data.pop("prompt", None)
    relaxed = replace(spec, input_schema={**spec.input_schema, "required": []})
    try:
        validate_input(relaxed, data)
    except InputError as error:
        labels = {field.name: field.label for field in form_fields(spec)}
        name = (error.field or "").partition(".")[0]
        return f"{labels.get(name, name)} {error.message}".strip()
    return None


def run_inputs(specs: list[ModelSpec], form: Mapping) -> list[tuple[str, dict]]:
    """(model id, typed input) for each model, from the shared form."""
    return [(spec.id, coerce_form(spec, form)) for spec in specs]


def described(specs: list[ModelSpec], errors: Mapping[str, RunbaseError]) -> dict[str, str]:
    """Each refused model's problem in a sentence, by model id."""
    by_id = {spec.id: spec for spec in specs}
    return {model_id: describe(by_id[model_id], error) for model_id, error in errors.items()}


def describe(spec: ModelSpec, error: RunbaseError) -> str:
    """One model's problem in a sentence: "Aspect ratio must be one of: …"."""
    fields = form_fields(spec)
    ((name, message),) = field_errors(error, fields).items()
    if name == FORM_ERROR:
        return message
    label = next(field.label for field in fields if field.name == name)
    return f"{label} {message}"
