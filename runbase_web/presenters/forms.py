"""A model's HTML form, from its input schema: which widget each property gets, and the
typed input a submitted form stands for. Shared by the Playground and the model pages."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from ..catalog import ModelSpec

FALSE_WORDS = frozenset({"false", "0", "off", "no"})


@dataclass(frozen=True)
class FormField:
    """How one input property is shown in an HTML form."""

    name: str
    widget: str
    label: str
    help: str
    required: bool
    default: object = None
    options: tuple[str, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    max_items: int | None = None
    min_length: int | None = None
    max_length: int | None = None


def form_fields(spec: ModelSpec) -> list[FormField]:
    """The model's form: prompt first, then the other properties in schema order."""
    required = set(spec.input_schema.get("required", []))
    names = sorted(spec.properties, key=lambda n: n != "prompt")
    return [_form_field(name, spec.properties[name], name in required) for name in names]


def _form_field(name: str, prop: dict, required: bool) -> FormField:
    """One FormField from one property schema."""
    return FormField(
        name=name, widget=_widget(name, prop),
        label=prop.get("title") or name.replace("_", " ").capitalize(),
        help=prop.get("description", ""), required=required,
        default=copy.deepcopy(prop.get("default")),
        options=tuple(str(v) for v in prop.get("enum", ())),
        minimum=prop.get("minimum"), maximum=prop.get("maximum"),
        max_items=prop.get("maxItems"),
        min_length=prop.get("minLength"), max_length=prop.get("maxLength"))


def _widget(name: str, prop: dict) -> str:
    """The widget for a property: textarea, select, number, checkbox, url_list or text."""
    kind = prop.get("type")
    if name == "prompt":
        return "textarea"
    if "enum" in prop:
        return "select"
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "checkbox"
    if kind == "array":
        return "url_list"
    return "text"


def coerce_form(spec: ModelSpec, form: Mapping) -> dict:
    """Typed input from HTML form values (a werkzeug MultiDict or a plain dict); fields
    outside the schema are ignored, empty optional ones dropped. Unparseable numbers are
    kept as strings so that validate_input reports them."""
    data: dict = {}
    for field in form_fields(spec):
        values = _form_values(form, field.name)
        if field.widget == "checkbox":
            data[field.name] = any(v.strip().lower() not in FALSE_WORDS for v in values)
        elif field.widget == "url_list":
            urls = _split_urls(values)
            if urls or field.required:
                data[field.name] = urls
        elif values and values[0].strip():
            data[field.name] = _coerce_scalar(spec.properties[field.name], values[0])
    return data


def _form_values(form: Mapping, name: str) -> list[str]:
    """All string values a form holds for ``name``."""
    if hasattr(form, "getlist"):
        values = form.getlist(name)
    else:
        value = form.get(name)
        values = [] if value is None else value if isinstance(value, (list, tuple)) else [value]
    return [v if isinstance(v, str) else str(v) for v in values]


def _split_urls(values: list[str]) -> list[str]:
    """URLs from several form values or newline-separated text, blanks dropped."""
    return [line.strip() for value in values for line in value.splitlines() if line.strip()]


def _coerce_scalar(prop: dict, value: str) -> object:
    """A form string as the property's type (enum value, integer, number or string)."""
    if "enum" in prop:
        return next((v for v in prop["enum"] if str(v) == value), value)
    text = value.strip()
    try:
        if prop.get("type") == "integer":
            return int(text)
        if prop.get("type") == "number":
            number = float(text)
            return int(number) if number.is_integer() else number
    except ValueError:
        return value
    return value
