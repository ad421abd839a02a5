"""Run one form on several models at once: price each, then create every run or none.

The form is shared: each model takes the fields it has and ignores the rest. Runs are
created through services.runs.create_run in the caller's single transaction, so a short
balance or one invalid input leaves nothing behind once the caller rolls back.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping

from sqlalchemy.orm import Session

from ..errors import InsufficientBalance, RunbaseError
from ..models import Run
from ..services import runs
from ..money import format_usd
from ..catalog import Catalog, InputError, ModelSpec, price, validate_input
from ..presenters.forms import coerce_form, form_fields
from .presenters import FORM_ERROR, estimate, field_errors

MIN_MODELS, MAX_MODELS = 2, 4


class MultiRunError(RunbaseError):
    """Some of the runs can't be created: `errors` says why, by model id."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = errors or {}


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


def create_runs(session: Session, *, catalog: Catalog, provider_env: Mapping[str, str],
                user_id: int, specs: list[ModelSpec], form: Mapping,
                input_for: Callable[[ModelSpec, dict], dict],
                parent_id: str | None = None) -> list[Run]:
    """One run per model from the shared form, in the caller's transaction.

    `input_for(spec, typed)` adjusts each model's typed input (the seed control). Every
    model is tried, so all problems are reported at once; any problem raises
    MultiRunError and the caller must roll back the runs already added.
    """
    created, errors, refused = [], {}, []
    for spec in specs:
        raw = input_for(spec, coerce_form(spec, form))
        try:
            created.append(runs.create_run(
                session, catalog=catalog, provider_env=provider_env, user_id=user_id,
                api_key_id=None, model_id=spec.id, source="playground", raw_input=raw,
                parent_id=parent_id))
        except InsufficientBalance:
            refused.append(spec)
        except RunbaseError as error:
            errors[spec.id] = describe(spec, error)
    if errors:
        raise MultiRunError("Nothing was run: fix the input for "
                            + ", ".join(errors) + ".", errors)
    if refused:
        total = sum(run.cost_micros for run in created) + sum(
            _price_or_zero(spec, form, input_for) for spec in refused)
        raise MultiRunError(f"Your balance is too low for these {len(specs)} runs, which cost "
                            f"{format_usd(total)} together. Nothing was run.")
    return created


def _price_or_zero(spec: ModelSpec, form: Mapping, input_for) -> int:
    """The price of a run that was refused for lack of funds (its input was valid)."""
    try:
        return price(spec, runs.prepare_input(spec, input_for(spec, coerce_form(spec, form))))
    except (RunbaseError, InputError):
        return 0


def describe(spec: ModelSpec, error: RunbaseError) -> str:
    """One model's problem in a sentence: "Aspect ratio must be one of: …"."""
    fields = form_fields(spec)
    ((name, message),) = field_errors(error, fields).items()
    if name == FORM_ERROR:
        return message
    label = next(field.label for field in fields if field.name == name)
    return f"{label} {message}"
