"""What the models and docs pages show, computed from the catalog, the error classes and
the settings. Presentation only: no database, no request; views pass in what they read.

Prices are never recomputed here: every amount a page shows comes from
``catalog.price`` (or, for a per-unit rate, straight from the catalog entry),
so the page cannot disagree with what a run is charged.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from markupsafe import Markup, escape

from .. import errors
from ..errors import RunbaseError
from ..money import format_usd
from ..services import idempotency
from ..catalog import UPSTREAM_ADAPTER, Catalog, ModelSpec, price, validate_input
from ..presenters.forms import form_fields
from ..presenters.run_form import PER_UNIT
from ..services.snippets import curl_snippet, python_snippet

#: The prompt the examples send, by model kind.
SAMPLE_PROMPTS = {
    "image": "A cozy bookshop interior with warm lighting, watercolor style",
    "video": "Waves rolling onto a beach at sunset, slow camera pan",
}
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


def sample_input(spec: ModelSpec) -> dict[str, Any]:
    """The input the examples send: a sample prompt and every non-empty schema default."""
    prompt = spec.properties["prompt"]
    text = SAMPLE_PROMPTS[spec.kind][: prompt.get("maxLength", 4000)]
    data: dict[str, Any] = {"prompt": text}
    for name, prop in spec.properties.items():
        if name != "prompt" and "default" in prop and prop["default"] not in ([], {}, ""):
            data[name] = prop["default"]
    return data


def echoed_input(spec: ModelSpec, data: dict) -> dict[str, Any]:
    """The input a created run echoes for ``data``: defaults applied and, for models that
    take a seed, the one the server picked (an example value here)."""
    echoed = validate_input(spec, data)
    if "seed" in spec.properties and "seed" not in echoed:
        echoed["seed"] = EXAMPLE_SEED
    return echoed


def example_model(catalog: Catalog, env: Mapping[str, str]) -> ModelSpec:
    """The model the docs use in their examples: local/sketch, which every server can run
    (else the first available model, else the first one)."""
    specs = catalog.all()
    preferred = catalog.get("local/sketch")
    if preferred is not None and preferred.is_available(env):
        return preferred
    return next((spec for spec in specs if spec.is_available(env)), specs[0])


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


# --- errors ----------------------------------------------------------------------------


#: Where the API's error classes are defined; the error reference lists all of theirs.
API_ERROR_MODULES = (errors, idempotency)

#: When each API error happens, keyed by its code; the codes and statuses themselves come
#: from the error classes, so the docs list exactly what the code can answer.
ERROR_CAUSES = {
    "bad_request": "Any other malformed request the more specific codes do not cover.",
    "invalid_json": "The request body is not valid JSON or not a JSON object, or it is nested "
                    "deeper than 32 levels, holds `NaN`/`Infinity` or a number beyond a "
                    "double, or a string with a lone surrogate escape (e.g. `\\ud800`).",
    "missing_model": "`model` is missing or not a string.",
    "missing_input": "`input` is missing or not an object.",
    "invalid_query": "A query parameter of `GET /api/v1/runs` (limit, after, status, model) "
                     "has a value it cannot take.",
    "invalid_input": "`input` does not match the model's schema (the message names the field "
                     "and the rule it broke), holds a NUL character, or `webhook` is not an "
                     "absolute http(s) URL without spaces or control characters.",
    "model_not_found": "No model with this id on this server; the message says when it exists "
                       "but its provider is not configured here.",
    "invalid_idempotency_key": "The `Idempotency-Key` header is empty or longer than 255 "
                               "characters.",
    "missing_api_key": "No `Authorization` header, or not in the form `Bearer sk-...`.",
    "invalid_api_key": "The key is unknown, disabled or deleted.",
    "insufficient_balance": "The account's balance is below this run's cost.",
    "api_key_spend_limit_exceeded": "This run would take the key past its lifetime spend "
                                    "limit.",
    "ip_not_allowed": "The key has an IP allowlist and the client's address is not on it.",
    "run_not_found": "No run with this id belongs to this account.",
    "not_found": "No such endpoint under `/api/v1` (or no such model on "
                 "`GET /api/v1/models/:provider/:name`).",
    "method_not_allowed": "The endpoint exists but not with this HTTP method; the `Allow` "
                          "header lists the ones it takes.",
    "idempotency_key_in_use": "An earlier request with the same `Idempotency-Key` is still "
                              "being processed; retry shortly.",
    "payload_too_large": "The request body is larger than the server accepts.",
    "idempotency_key_reused": "The `Idempotency-Key` was already used within 24 h with a "
                              "different request body.",
    "RATE_LIMITED": "More requests than the per-key limit allows (see Rate limits); wait for "
                    "the `Retry-After` seconds.",
    "internal_error": "Something unexpected failed on the server; the message carries a "
                      "request id to quote, never a stack trace.",
    "service_unavailable": "The server's database is out of reach for a moment (a restart or "
                           "failover). Nothing was charged unless the run was created: retry "
                           "after `Retry-After` seconds, with the same `Idempotency-Key` to be "
                           "safe.",
}


@dataclass(frozen=True)
class ErrorRow:
    """One API error: its HTTP status, code and when it happens."""

    status: int
    code: str
    cause: str

    @property
    def cause_html(self) -> Markup:
        """The cause with its `backticked` words as <code>, everything else escaped."""
        return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(self.cause))))


def api_error_classes() -> list[type[RunbaseError]]:
    """The error classes the API answers with, in the order their modules define them:
    every class with its own code in API_ERROR_MODULES (web-only errors, such as the
    billing page's, live elsewhere and are not part of the API)."""
    found: list[type[RunbaseError]] = []
    for module in API_ERROR_MODULES:
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, RunbaseError)
                    and "code" in vars(value) and value not in found):
                found.append(value)
    return found


def error_rows() -> list[ErrorRow]:
    """The error reference, by HTTP status; a code without a written cause falls back to
    its class docstring (a test keeps ERROR_CAUSES complete)."""
    rows = [ErrorRow(cls.status, cls.code, ERROR_CAUSES.get(cls.code, cls.__doc__ or ""))
            for cls in api_error_classes()]
    return sorted(rows, key=lambda row: row.status)
