"""The run form as the templates show it (`playground/_form.html`): one model's fields
with their values, its price so far and the models a grid may also run it on. Shared by the
Playground and the model pages, which both offer the form.

Presentation only: no database, no request. Views pass in what they read.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from ..catalog import Catalog, InputError, ModelSpec, price, validate_input
from ..money import format_usd
from ..services.run_creation import SEED_MODES
from .forms import FormField, coerce_form, form_fields

#: Words for the unit a price is multiplied by, keyed by the input field.
PER_UNIT = {"num_images": "image", "duration": "s"}


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


def multi_options(catalog: Catalog, spec: ModelSpec, env: Mapping[str, str]) -> list[ModelOption]:
    """The models a form's input may also be run on: same kind, available here."""
    return [ModelOption(other, (), price_label(other)) for other in catalog.all()
            if other.kind == spec.kind and other.is_available(env)]


def form_context(spec: ModelSpec, env: Mapping[str, str], *, values: dict | None = None,
                 errors: dict | None = None, form: Mapping | None = None,
                 parent_id: str | None = None, seed_mode: str = "new",
                 catalog: Catalog | None = None,
                 notice: str | None = None) -> dict[str, Any]:
    """Everything the run form shows for one model, with defaults or the posted values.

    `parent_id` is the run the form was restored from (lineage); `seed_mode` is "new" (a
    random seed each run) or "keep". With `catalog`, the form offers Grid mode, whose
    model axis may pick any of `multi_options`.
    """
    fields = form_fields(spec)
    values = values if values is not None else default_values(fields)
    micros, price_error = estimate(spec, form if form is not None else values)
    return {"spec": spec, "fields": fields, "values": values, "errors": errors or {},
            "missing_env": spec.missing_env(env), "price_micros": micros,
            "price_error": price_error, "parent_id": parent_id,
            "seed_mode": seed_mode if seed_mode in SEED_MODES else "new",
            "multi_options": multi_options(catalog, spec, env) if catalog is not None else [],
            "restore_notice": notice}
