"""What the models and docs pages show, computed from the catalog and the settings (the
error reference is presenters/api_errors.py). Presentation only: no database, no request; views pass in what they read.

Prices are never recomputed here: every amount a page shows comes from
``catalog.price`` (or, for a per-unit rate, straight from the catalog entry),
so the page cannot disagree with what a run is charged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..money import format_usd
from ..catalog import UPSTREAM_ADAPTER, Catalog, ModelSpec, price, validate_input
from ..presenters.examples import example_model, sample_input
from ..presenters.forms import form_fields
from ..presenters.run_form import PER_UNIT
from ..services.snippets import curl_snippet, python_snippet

#: Stands for the random seed the server records on runs that did not send one.
EXAMPLE_SEED = 1316143832
#: Words for the unit a price is multiplied by (singular, plural), keyed by input field.
UNIT_WORDS = {"num_images": ("image", "images"), "duration": ("second", "seconds")}


# --- the catalog as cards --------------------------------------------------------------


@dataclass(frozen=True)
class ModelCard:
    """One model as the catalog page lists it."""

    spec: ModelSpec
    missing_env: tuple[str, ...]
    price_summary: str
    #: Served through the upstream hosted Runbase rather than its own provider.
    via_upstream: bool

    @property
    def available(self) -> bool:
        """Whether this server can run the model now."""
        return not self.missing_env


def model_card(spec: ModelSpec, env: Mapping[str, str]) -> ModelCard:
    """The card of one model, given the provider variables that are set."""
    missing = tuple(spec.missing_env(env))
    upstream = not missing and spec.effective_adapter(env) == UPSTREAM_ADAPTER
    return ModelCard(spec, missing, price_summary(spec), upstream)


def price_summary(spec: ModelSpec) -> str:
    """A model's price in a few words: "$0.04 / image", "$0.001 / image" (per image of
    num_images), "from $0.03 / s" (the cheapest tier, per second of duration)."""
    table = spec.price
    amounts = list(table["tiers"].values()) if "tiers" in table else [table["micros"]]
    unit = PER_UNIT.get(table["per"], table["per"]) if "per" in table else spec.kind
    prefix = "from " if len(set(amounts)) > 1 else ""
    return f"{prefix}{format_usd(min(amounts))} / {unit}"


def filter_options(catalog: Catalog) -> dict[str, list[str]]:
    """The values the catalog page can filter on, in catalog order."""
    specs = catalog.all()
    return {"providers": list(dict.fromkeys(spec.provider for spec in specs)),
            "kinds": sorted({spec.kind for spec in specs})}


def model_cards(catalog: Catalog, env: Mapping[str, str], *, provider: str = "",
                kind: str = "", query: str = "") -> list[ModelCard]:
    """The cards matching the filters; an empty filter matches everything. The query
    matches the id or the name, every word of it, ignoring case."""
    words = query.lower().split()
    return [model_card(spec, env) for spec in catalog.all()
            if (not provider or spec.provider == provider)
            and (not kind or spec.kind == kind)
            and all(word in f"{spec.id} {spec.name}".lower() for word in words)]


# --- one model's inputs ----------------------------------------------------------------


@dataclass(frozen=True)
class InputRow:
    """One property of a model's input schema, as the reference table shows it."""

    name: str
    type: str
    required: bool
    options: tuple[str, ...]
    #: The default as JSON ("\"1:1\"", "5", "[]"), None when there is none.
    default: str | None
    limits: tuple[str, ...]
    description: str


def input_rows(spec: ModelSpec) -> list[InputRow]:
    """The input table: the same fields, in the same order, as the model's form."""
    required = set(spec.input_schema.get("required", []))
    return [_input_row(field.name, spec.properties[field.name], field.name in required)
            for field in form_fields(spec)]


def _input_row(name: str, prop: dict, required: bool) -> InputRow:
    """One InputRow from one property schema."""
    return InputRow(
        name=name, type=_type_label(prop), required=required,
        options=tuple(str(value) for value in prop.get("enum", ())),
        default=json.dumps(prop["default"], ensure_ascii=False) if "default" in prop else None,
        limits=tuple(_limits(prop)), description=prop.get("description", ""))


def _type_label(prop: dict) -> str:
    """"string", "integer", "string[]" (an array of strings)..."""
    kind = prop.get("type", "any")
    if kind == "array":
        return f"{prop.get('items', {}).get('type', 'any')}[]"
    return " | ".join(kind) if isinstance(kind, list) else kind


def _limits(prop: dict) -> list[str]:
    """The range, length and item rules of a property, in plain words."""
    limits = []
    span = _span(prop.get("minimum"), prop.get("maximum"))
    if span:
        limits.append(span)
    length = _span(prop.get("minLength"), prop.get("maxLength"))
    if length:
        limits.append(f"{length} characters")
    items = _span(prop.get("minItems"), prop.get("maxItems"))
    if items:
        limits.append(f"{items} items")
    item = prop.get("items", {})
    if item.get("format") == "uri" or str(item.get("pattern", "")).startswith("^https?"):
        limits.append("each an http(s) URL")
    if "maxLength" in item:
        limits.append(f"each at most {item['maxLength']} characters")
    return limits


def _span(low: object, high: object) -> str:
    """"1–4000", "at least 3", "at most 10" or ""."""
    if low is not None and high is not None:
        return f"{low}–{high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return ""


# --- one model's prices ----------------------------------------------------------------


@dataclass(frozen=True)
class PriceCell:
    """The price of a run with these values in the priced fields."""

    input: dict
    micros: int

    @property
    def input_json(self) -> str:
        """The priced values as JSON, so a reader (or a test) can re-price the cell."""
        return json.dumps(self.input, sort_keys=True)


@dataclass(frozen=True)
class PriceRow:
    """One tier (or the only row of an untiered price)."""

    label: str
    #: The rate per unit, when the price is multiplied by a field.
    unit_micros: int | None
    cells: tuple[PriceCell, ...]


@dataclass(frozen=True)
class PriceTable:
    """Every tier of a model's price, with totals for sample quantities."""

    tier_field: str | None
    per_field: str | None
    unit: str | None
    columns: tuple[str, ...]
    rows: tuple[PriceRow, ...]


def price_table(spec: ModelSpec) -> PriceTable:
    """The price table: a row per tier, a column per sample quantity of the per-unit field
    (each value of an enum; the minimum, default and maximum of an integer)."""
    table = spec.price
    tier, per = table.get("tier"), table.get("per")
    tiers = list(spec.properties[tier]["enum"]) if tier else [None]
    units = _unit_samples(spec.properties[per]) if per else [None]
    rows = tuple(_price_row(spec, tier, value, per, units) for value in tiers)
    singular, plural = UNIT_WORDS.get(per, (per, per)) if per else (None, None)
    columns = tuple(_count(unit, singular, plural) for unit in units) if per else ("Price",)
    return PriceTable(tier, per, singular, columns, rows)


def _price_row(spec: ModelSpec, tier: str | None, value: object, per: str | None,
               units: list) -> PriceRow:
    """One tier's row: its per-unit rate and the total for each sample quantity."""
    cells = []
    for unit in units:
        priced = {**({tier: value} if tier else {}), **({per: unit} if per else {})}
        cells.append(PriceCell(priced, price(spec, priced)))
    rate = None
    if per:
        rate = spec.price["tiers"][str(value)] if tier else spec.price["micros"]
    return PriceRow("Every run" if tier is None else str(value), rate, tuple(cells))


def _unit_samples(prop: dict) -> list:
    """The quantities to show totals for: every enum value, or min / default / max."""
    if "enum" in prop:
        return list(prop["enum"])
    candidates = [prop.get("minimum", 1), prop.get("default"), prop.get("maximum")]
    return sorted({value for value in candidates if value is not None})


def _count(unit: object, singular: str, plural: str) -> str:
    """"1 image", "4 images", "5 seconds"."""
    return f"{unit} {singular if str(unit) == '1' else plural}"


# --- examples --------------------------------------------------------------------------


def echoed_input(spec: ModelSpec, data: dict) -> dict[str, Any]:
    """The input a created run echoes for ``data``: defaults applied and, for models that
    take a seed, the one the server picked (an example value here)."""
    echoed = validate_input(spec, data)
    if "seed" in spec.properties and "seed" not in echoed:
        echoed["seed"] = EXAMPLE_SEED
    return echoed


def docs_example(catalog: Catalog, env: Mapping[str, str], base_url: str) -> dict[str, Any]:
    """The example every docs page uses: the model, its input, the run it echoes, its
    cost, and the curl and Python calls that create it on this server."""
    spec = example_model(catalog, env)
    data = sample_input(spec)
    return {"example": spec, "example_input": data, "example_echo": echoed_input(spec, data),
            "example_cost": price(spec, validate_input(spec, data)),
            "example_price": price_summary(spec),
            "curl": curl_snippet(base_url, spec.id, data),
            "python": python_snippet(base_url, spec.id, data)}
