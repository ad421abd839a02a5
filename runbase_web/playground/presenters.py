"""What the Playground templates show besides the run form (presenters/run_form.py):
the model picker, restored and posted form values, errors by field, the status card.

Presentation only: no database, no request. Views pass in what they read.
"""
from __future__ import annotations

from itertools import groupby
from typing import Any, Mapping

from ..catalog import Catalog, ModelSpec
from ..errors import RunbaseError
from ..models import Run
from ..presenters.forms import FormField, coerce_form, form_fields
from ..presenters.outputs import output_items
from ..presenters.run_form import ModelOption, default_values, price_label
from ..services.runs import run_seed, run_summary

#: Errors that don't belong to one field are shown at the top of the form under this key.
FORM_ERROR = "_form"


def model_groups(catalog: Catalog, env: Mapping[str, str]) -> list[tuple[str, list[ModelOption]]]:
    """The picker: models grouped by provider, in catalog order (local first)."""
    options = [ModelOption(spec, tuple(spec.missing_env(env)), price_label(spec))
               for spec in catalog.all()]
    return _by_provider(options)


def picker(catalog: Catalog, env: Mapping[str, str]) -> dict[str, list]:
    """The picker in two lists: the models this server can run, first, and the ones it
    can't, each with what enables it (shown collapsed, so they don't bury the others)."""
    groups = model_groups(catalog, env)
    options = [option for _provider, group in groups for option in group]
    return {"groups": groups,
            "available": _by_provider([o for o in options if o.available]),
            "unavailable": _by_provider([o for o in options if not o.available])}


def _by_provider(options: list[ModelOption]) -> list[tuple[str, list[ModelOption]]]:
    return [(provider, list(group))
            for provider, group in groupby(options, key=lambda o: o.spec.provider)]


def can_reference(catalog: Catalog, env: Mapping[str, str], reference_field: str) -> bool:
    """Whether "Use as reference" leads anywhere: some image model available here takes
    reference images."""
    return any(spec.kind == "image" and reference_field in spec.properties
               and spec.is_available(env) for spec in catalog.all())


def input_values(spec: ModelSpec, run_input: Mapping) -> dict[str, Any]:
    """Form values showing a typed run input (a past run, a recipe, a shared run).

    Fields the model doesn't have are left out and missing ones get their defaults, so
    an input from anywhere yields a form of this model and nothing else.
    """
    fields = form_fields(spec)
    values = default_values(fields)
    for field in fields:
        if field.name not in run_input:
            continue
        value = run_input[field.name]
        if field.widget == "checkbox":
            values[field.name] = value is True
        elif field.widget == "url_list":
            items = value if isinstance(value, list) else [value]
            values[field.name] = "\n".join(str(item) for item in items)
        else:
            values[field.name] = "" if value is None else str(value)
    return values


def posted_values(spec: ModelSpec, form: Mapping) -> dict[str, Any]:
    """Form values as the person typed them, to show the form again with its errors."""
    typed = coerce_form(spec, form)  # read checkboxes exactly as the run will
    return {field.name: typed.get(field.name, False) if field.widget == "checkbox"
            else form.get(field.name, "") for field in form_fields(spec)}


def field_errors(error: RunbaseError, fields: list[FormField]) -> dict[str, str]:
    """A service error as {form field: message}, or {FORM_ERROR: message}.

    Input errors name a path such as "image_urls.0"; the form shows it by "image_urls".
    """
    path = error.field or ""
    name, _, index = path.partition(".")
    if name not in {field.name for field in fields}:
        return {FORM_ERROR: error.message}
    # InvalidInput's message is "input.<path>: <rule>"; next to the field, the rule is enough.
    message = error.message.removeprefix(f"input.{path}: ")
    if index.isdigit():
        message = f"URL {int(index) + 1} {message}"
    return {name: message}


def card_context(run: Run, catalog: Catalog, base_url: str,
                 typical: Mapping[str, int] | None = None,
                 reference_ok: bool = True) -> dict[str, Any]:
    """Everything the status card shows about one run.

    `typical` maps model ids to how long their runs usually take here (seconds); an
    active card shows its model's, a finished one needs none. `reference_ok` is
    can_reference's answer: without a model to take it, no "Use as reference".
    """
    outputs = output_items(run, base_url)
    return {"run": run, "spec": catalog.get(run.model),
            "prompt": (run.input or {}).get("prompt", ""),
            "outputs": outputs, "seed": run_seed(run),
            "can_reference": reference_ok and bool(outputs) and not outputs[0]["is_video"],
            "elapsed": run_summary(run)["elapsed_seconds"],
            "canceled": run.status == "failed" and run.error_code == "canceled",
            "typical": (typical or {}).get(run.model) if not run.is_finished else None}
