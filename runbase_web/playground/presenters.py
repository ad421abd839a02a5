"""What the Playground templates show, computed from catalog specs, forms and runs.

Presentation only: no database, no request. Views pass in what they read.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import groupby
from typing import Any, Mapping

from ..errors import RunbaseError
from ..models import Run
from ..money import format_usd
from ..catalog import Catalog, InputError, ModelSpec, price, validate_input
from ..presenters.forms import FormField, coerce_form, form_fields
from ..services.runs import run_summary

#: Words for the unit a price is multiplied by, keyed by the input field.
PER_UNIT = {"num_images": "image", "duration": "s"}
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov")
#: Errors that don't belong to one field are shown at the top of the form under this key.
FORM_ERROR = "_form"
#: The seed control: a random seed for every run, or the same seed again.
SEED_MODES = ("new", "keep")


@dataclass(frozen=True)
class ModelOption:
    """One entry of the model picker."""

    spec: ModelSpec
    missing_env: tuple[str, ...]
    price_label: str

    @property
    def available(self) -> bool:
        """Whether this server can run the model (its provider variables are set)."""
        return not self.missing_env


def price_label(spec: ModelSpec) -> str:
    """A model's price in short: "$0.04", "$0.06–$0.13", "$0.001 / image"."""
    table = spec.price
    if "tiers" in table:
        low, high = min(table["tiers"].values()), max(table["tiers"].values())
        label = format_usd(low) if low == high else f"{format_usd(low)}–{format_usd(high)}"
    else:
        label = format_usd(table["micros"])
    if "per" in table:
        label += f" / {PER_UNIT.get(table['per'], table['per'])}"
    return label


def model_groups(catalog: Catalog, env: Mapping[str, str]) -> list[tuple[str, list[ModelOption]]]:
    """The picker: models grouped by provider, in catalog order (local first)."""
    options = [ModelOption(spec, tuple(spec.missing_env(env)), price_label(spec))
               for spec in catalog.all()]
    return [(provider, list(group))
            for provider, group in groupby(options, key=lambda o: o.spec.provider)]


def default_values(fields: list[FormField]) -> dict[str, Any]:
    """Form values from the schema defaults, as the widgets show them."""
    values: dict[str, Any] = {}
    for field in fields:
        if field.widget == "checkbox":
            values[field.name] = bool(field.default)
        elif field.widget == "url_list":
            values[field.name] = "\n".join(field.default or [])
        else:
            values[field.name] = "" if field.default is None else str(field.default)
    return values


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


def estimate(spec: ModelSpec, form: Mapping) -> tuple[int | None, str | None]:
    """The price of the form as filled in so far: (micros, None), or (None, why not).

    Only the fields the price depends on are checked, so an empty prompt still shows a
    price; a bad value in a priced field shows why instead of a made-up number.
    """
    data = coerce_form(spec, form)
    priced = [name for name in (spec.price.get("tier"), spec.price.get("per")) if name]
    only_priced = replace(spec, input_schema={
        "type": "object", "properties": {name: spec.properties[name] for name in priced}})
    try:
        valid = validate_input(only_priced, {name: data[name] for name in priced if name in data})
        return price(spec, valid), None
    except InputError as error:
        labels = {field.name: field.label for field in form_fields(spec)}
        return None, f"{labels.get(error.field, error.field)} {error.message}"


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


def output_items(run: Run, base_url: str) -> list[dict[str, Any]]:
    """A run's outputs: the same-origin path to display, the absolute URL to copy."""
    return [{"src": path, "url": base_url.rstrip("/") + path,
             "is_video": path.lower().endswith(VIDEO_EXTENSIONS)}
            for path in run.output_urls or []]


def run_seed(run: Run) -> int | None:
    """The seed a run used, when its model takes one."""
    seed = (run.input or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def card_context(run: Run, catalog: Catalog, base_url: str) -> dict[str, Any]:
    """Everything the status card shows about one run."""
    outputs = output_items(run, base_url)
    return {"run": run, "spec": catalog.get(run.model),
            "prompt": (run.input or {}).get("prompt", ""),
            "outputs": outputs, "seed": run_seed(run),
            "can_reference": bool(outputs) and not outputs[0]["is_video"],
            "elapsed": run_summary(run)["elapsed_seconds"]}


def multi_options(catalog: Catalog, spec: ModelSpec, env: Mapping[str, str]) -> list[ModelOption]:
    """The models a form's input may also be run on: same kind, available here."""
    return [ModelOption(other, (), price_label(other)) for other in catalog.all()
            if other.kind == spec.kind and other.is_available(env)]


def form_context(spec: ModelSpec, env: Mapping[str, str], *, values: dict | None = None,
                 errors: dict | None = None, form: Mapping | None = None,
                 parent_id: str | None = None, seed_mode: str = "new",
                 catalog: Catalog | None = None, multi: Mapping | None = None,
                 notice: str | None = None) -> dict[str, Any]:
    """Everything the run form shows for one model, with defaults or the posted values.

    `parent_id` is the run the form was restored from (lineage); `seed_mode` is "new" (a
    random seed each run) or "keep". With `catalog`, the form offers "Multiple models";
    `multi` is its state as posted ({"on", "models", "errors"}).
    """
    fields = form_fields(spec)
    values = values if values is not None else default_values(fields)
    micros, price_error = estimate(spec, form if form is not None else values)
    multi = dict(multi or {})
    return {"spec": spec, "fields": fields, "values": values, "errors": errors or {},
            "missing_env": spec.missing_env(env), "price_micros": micros,
            "price_error": price_error, "parent_id": parent_id,
            "seed_mode": seed_mode if seed_mode in SEED_MODES else "new",
            "multi_options": multi_options(catalog, spec, env) if catalog is not None else [],
            "multi_on": bool(multi.get("on")),
            "multi_models": list(multi.get("models") or [spec.id]),
            "multi_errors": dict(multi.get("errors") or {}),
            "restore_notice": notice}
