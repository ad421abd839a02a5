"""Run input against a model's catalog entry: validation (defaults filled in, one plain
error naming the field) and pricing (integer micro-USD from the validated input)."""
from __future__ import annotations

import copy

from .specs import ModelSpec

TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number",
              "boolean": "a boolean", "array": "an array", "object": "an object",
              "null": "null"}


class InputError(Exception):
    """A run's input does not match the model's schema."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        self.message = message
        super().__init__(f"input.{field}: {message}" if field else message)


# --- validation--------------------------------------------------------------------------


def validate_input(spec: ModelSpec, raw: dict) -> dict:
    """Return a new dict: ``raw`` with defaults filled in, validated against the model's
    schema; raise InputError naming the field and the rule for the first problem."""
    if not isinstance(raw, dict):
        raise InputError(None, "input must be an object")
    data = copy.deepcopy(raw)
    for name, prop in spec.properties.items():
        if name not in data and "default" in prop:
            data[name] = copy.deepcopy(prop["default"])
    errors = sorted(spec.validator.iter_errors(data),
                    key=lambda e: ([str(p) for p in e.absolute_path], e.validator))
    if errors:
        raise _input_error(spec, errors[0])
    return _normalise_integers(spec, data)


def _normalise_integers(spec: ModelSpec, data: dict) -> dict:
    """JSON Schema accepts 5.0 as an integer; store and price it as 5."""
    for name, prop in spec.properties.items():
        value = data.get(name)
        if prop.get("type") == "integer" and isinstance(value, float):
            data[name] = int(value)
    return data


def _input_error(spec: ModelSpec, error) -> InputError:
    """Turn one jsonschema error into an InputError with a plain-words message."""
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = [n for n in error.validator_value if n not in error.instance]
        return InputError(_join(path, missing[0]), "is required")
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(spec.properties))
        allowed = ", ".join(spec.properties)
        return InputError(_join(path, extra[0]), f"unknown field (allowed: {allowed})")
    return InputError(path or None, _rule_message(error))


def _join(path: str, name: str) -> str:
    """Dotted field name of ``name`` under ``path``."""
    return f"{path}.{name}" if path else name


def _rule_message(error) -> str:
    """Plain words for the rule a value broke."""
    rule, limit = error.validator, error.validator_value
    if rule == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return "must be " + " or ".join(TYPE_WORDS.get(k, k) for k in kinds)
    if rule == "enum":
        return "must be one of: " + ", ".join(str(v) for v in limit)
    if rule in ("format", "pattern") and _is_url_rule(rule, limit):
        return "must be an http(s) URL"
    if rule == "minLength" and limit == 1:
        return "must not be empty"
    words = {
        "minimum": "must be at least {}", "maximum": "must be at most {}",
        "exclusiveMinimum": "must be greater than {}", "exclusiveMaximum": "must be less than {}",
        "minLength": "must be at least {} characters", "maxLength": "must be at most {} characters",
        "minItems": "must have at least {} items", "maxItems": "must have at most {} items",
        "const": "must be {}", "pattern": "must match the pattern {}", "format": "must be a valid {}",
    }
    if rule in words:
        return words[rule].format(limit)
    if rule == "uniqueItems":
        return "must not contain duplicates"
    return error.message


def _is_url_rule(rule: str, limit: object) -> bool:
    """True for the "uri" format and the http(s) pattern used for image URLs."""
    return limit == "uri" if rule == "format" else str(limit).startswith("^https?")


# --- pricing -----------------------------------------------------------------------------


def price(spec: ModelSpec, valid_input: dict) -> int:
    """The run's price in integer micro-USD, from the validated input."""
    table = spec.price
    if "tiers" in table:
        key = str(_priced_value(spec, valid_input, table["tier"]))
        amount = table["tiers"].get(key)
        if amount is None:
            raise InputError(table["tier"], "has no price for this value")
    else:
        amount = table["micros"]
    if "per" in table:
        amount *= _units(table["per"], _priced_value(spec, valid_input, table["per"]))
    return int(amount)


def _priced_value(spec: ModelSpec, data: dict, field: str) -> object:
    """The value of a priced field, falling back to its schema default."""
    if field in data:
        return data[field]
    if "default" in spec.properties.get(field, {}):
        return spec.properties[field]["default"]
    raise InputError(field, "is required")


def _units(field: str, value: object) -> int:
    """The whole-number multiplier a field stands for (an int or a numeric string)."""
    if isinstance(value, bool):
        raise InputError(field, "must be an integer")
    try:
        units = int(value)
    except (TypeError, ValueError):
        raise InputError(field, "must be an integer") from None
    if units != value and str(units) != str(value).strip():
        raise InputError(field, "must be an integer")
    return units
