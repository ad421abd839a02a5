"""The create-run body as the OpenAPI document describes it.

Every catalog model gets a named variant (available on this server or not), discriminated
on `model`, plus one general variant for any other `provider/name` id. A client generated
from one server then type-checks every model of the catalog and keeps working against a
server that has more models or other providers configured: availability is a fact about
a server at a moment, and the API answers it (400 `model_not_found`), not the types.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ..catalog import Catalog, ModelSpec
from ..catalog.specs import ID_RE
from ..services.run_creation import MAX_WEBHOOK_URL

#: What jsontext refuses in any input string, said in the schema so clients know it.
NO_NUL = "^[^\\u0000]*$"
#: Suffixes of the two components each model gets.
REQUEST_SUFFIX, INPUT_SUFFIX = "RunRequest", "Input"

#: The `webhook` field of every variant, as services.run_creation.check_webhook_url checks
#: it: http or https (any case), a host, no spaces or control characters; null or absent
#: means none. A pattern rather than `format`, which would promise RFC 3986 syntax.
WEBHOOK = {
    "type": ["string", "null"], "maxLength": MAX_WEBHOOK_URL,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\u0000-\\u0020\\u007f/?#][^\\u0000-\\u0020\\u007f]*$",
    "description": "Optional. An absolute http(s) URL that gets the run object in a signed POST "
                   "when the run ends (see `webhooks` → `runEnded`); retried with backoff for "
                   "24 h. `null` or absent: no webhook.",
}


def as_validated(schema: Any) -> Any:
    """A copy of an input schema that promises what the server checks, no more.

    Every free-text string also says it holds no NUL character (refused anywhere in an
    input: PostgreSQL cannot store it). URL fields lose `format: uri`: the server takes any
    absolute http(s) URL without whitespace, non-ASCII ones included (`https://例え.jp/`),
    and clients and fuzzers that enforce RFC 3986 would contradict it; their `pattern`
    (`^https?://`) and description stay.
    """
    if isinstance(schema, list):
        return [as_validated(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied = {key: as_validated(value) for key, value in schema.items()}
    if copied.get("format") == "uri":
        del copied["format"]
    if copied.get("type") == "string" and "enum" not in copied and "pattern" not in copied:
        copied["pattern"] = NO_NUL
    return copied


def enum_member_name(field: str, value: object) -> str:
    """A constant name for one enum value: `16:9` of `aspect_ratio` → ASPECT_RATIO_16_9,
    `auto` → AUTO. Without it generators fall back to VALUE_0, VALUE_1, ..."""
    words = re.sub(r"[^A-Za-z0-9]+", "_", str(value)).strip("_").upper()
    if words[:1].isalpha():
        return words
    return f"{field.upper()}_{words}".strip("_")


def with_enum_names(schema: Any, field: str = "value") -> Any:
    """A copy of `schema` whose string and integer enums carry `x-enum-varnames` (read by
    openapi-python-client, openapi-typescript and datamodel-code-generator)."""
    if isinstance(schema, list):
        return [with_enum_names(item, field) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            copied[key] = {name: with_enum_names(prop, name) for name, prop in value.items()}
        else:
            copied[key] = with_enum_names(value, field)
    values = copied.get("enum")
    if isinstance(values, list) and values and all(_nameable(v) for v in values):
        names = [enum_member_name(field, v) for v in values]
        if len(set(names)) == len(names):
            copied["x-enum-varnames"] = names
    return copied


def _nameable(value: object) -> bool:
    return isinstance(value, str) and value != "" or isinstance(value, int) and not isinstance(value, bool)


def pascal_stem(model_id: str) -> str:
    """`openai/gpt-image-1.5` → OpenaiGptImage1_5: the id's words capitalised, with `_`
    kept only between two numbers, where dropping it would join them."""
    stem = ""
    for word in re.split(r"[^A-Za-z0-9]+", model_id):
        if not word:
            continue
        if stem[-1:].isdigit() and word[0].isdigit():
            stem += "_"
        stem += word[0].upper() + word[1:]
    return stem or "Model"


def _folded(name: str) -> str:
    """A name as generators compare it once they have re-cased it and dropped separators."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def component_stems(specs: Iterable[ModelSpec], reserved: Iterable[str]) -> dict[str, str]:
    """Model id → the stem of its components (`<stem>RunRequest`, `<stem>Input`), unique
    among themselves and against the document's other components even after a generator
    folds case and separators (an operator may add `acme/a-b` next to `acme/ab`)."""
    taken = {_folded(name) for name in reserved}
    stems: dict[str, str] = {}
    for spec in specs:
        base = stem = pascal_stem(spec.id)
        number = 2
        while {_folded(stem + REQUEST_SUFFIX), _folded(stem + INPUT_SUFFIX)} & taken:
            stem, number = f"{base}{number}", number + 1
        taken |= {_folded(stem + REQUEST_SUFFIX), _folded(stem + INPUT_SUFFIX)}
        stems[spec.id] = stem
    return stems


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _availability(spec: ModelSpec, env: Mapping[str, str]) -> str:
    missing = spec.missing_env(env)
    if not missing:
        return "Available on this server."
    return (f"Not available on this server until {', '.join(missing)} is set: creating a run "
            "answers 400 `model_not_found`.")


def _variant(spec: ModelSpec, stem: str, env: Mapping[str, str]) -> dict:
    """The body that creates a run of one catalog model."""
    return {
        "type": "object", "required": ["model", "input"],
        "description": f"{spec.name}. {spec.description} {_availability(spec, env)}",
        "properties": {"model": {"const": spec.id}, "input": _ref(stem + INPUT_SUFFIX),
                       "webhook": WEBHOOK},
    }


def _input_schema(spec: ModelSpec) -> dict:
    """The model's input schema as the API validates it, with NUL and enum names said."""
    schema = with_enum_names(as_validated(spec.input_schema))
    return {"description": f"The `input` of {spec.id} ({spec.name}).", **schema}


def _other_model(catalog: Catalog) -> dict:
    """Any model the catalog variants do not name: what a newer server may offer."""
    return {
        "type": "object", "required": ["model", "input"],
        "description": "A model this document does not list, by its `provider/name` id: one "
                       "a server added later. Its input schema is at "
                       "`GET /models/{provider}/{name}`; the server checks `input` against it "
                       "and answers 400 `model_not_found` for ids it does not know.",
        "properties": {
            "model": {"type": "string", "pattern": ID_RE.pattern,
                      "not": {"enum": [spec.id for spec in catalog.all()]}},
            "input": {"type": "object", "additionalProperties": True},
            "webhook": WEBHOOK,
        },
    }


def request_schemas(catalog: Catalog, env: Mapping[str, str],
                    reserved: Iterable[str]) -> dict[str, dict]:
    """The create-run body's components: CreateRunRequest = one of CatalogModelRunRequest
    (a variant per catalog model, discriminated on `model`) or OtherModelRunRequest."""
    specs = catalog.all()
    fixed = ("CreateRunRequest", "CatalogModelRunRequest", "OtherModelRunRequest")
    stems = component_stems(specs, [*reserved, *fixed])
    schemas: dict[str, dict] = {
        "CreateRunRequest": {
            "description": "The body of `createRun`: one of the catalog's models with its typed "
                           "input, or any other model id with an untyped input.",
            "oneOf": [_ref("CatalogModelRunRequest"), _ref("OtherModelRunRequest")]},
        "CatalogModelRunRequest": {
            "description": "A model of the catalog, available on this server or not "
                           "(`GET /models` says which).",
            "oneOf": [_ref(stems[spec.id] + REQUEST_SUFFIX) for spec in specs],
            "discriminator": {"propertyName": "model", "mapping": {
                spec.id: f"#/components/schemas/{stems[spec.id]}{REQUEST_SUFFIX}"
                for spec in specs}}},
        "OtherModelRunRequest": _other_model(catalog),
    }
    for spec in specs:
        schemas[stems[spec.id] + REQUEST_SUFFIX] = _variant(spec, stems[spec.id], env)
        schemas[stems[spec.id] + INPUT_SUFFIX] = _input_schema(spec)
    return schemas
