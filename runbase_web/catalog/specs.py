"""The model catalog: loading and checking models.json, each model's spec, availability
and routing.

The catalog is data (``models.json`` beside this module); an operator may layer their own
file over it (``RUNBASE_CATALOG``) to change prices, upstream names or deadlines, or to add
models, without touching code. Everything is checked when the catalog loads, so a bad entry
stops start-up with a message naming the model instead of failing a run later.

Availability and routing live here too (``ModelSpec.missing_env``, ``effective_adapter``):
a public model whose provider has no credentials is served by an upstream hosted Runbase
when ``RUNBASE_UPSTREAM_URL`` and ``RUNBASE_UPSTREAM_KEY`` are set.
"""
from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

PACKAGED_PATH = Path(__file__).resolve().parent / "models.json"

#: The adapter that sends runs to an upstream hosted Runbase, and the variables it needs.
UPSTREAM_ADAPTER = "runbase"
UPSTREAM_ENV = ("RUNBASE_UPSTREAM_URL", "RUNBASE_UPSTREAM_KEY")
#: Adapters whose input passes through to an operator-defined schema, so may rename fields.
PASSTHROUGH_ADAPTERS = frozenset({"replicate", "fal"})
INPUT_MAP_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[0\])?$")
KINDS = frozenset({"image", "video"})
ID_RE = re.compile(r"^[a-z0-9-]+/[A-Za-z0-9._/-]+$")
ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")

# key -> (accepted types, human description); bool is excluded from int separately.
ENTRY_KEYS = {
    "id": (str, "a string"),
    "name": (str, "a string"),
    "kind": (str, "a string"),
    "adapter": (str, "a string"),
    "upstream": (str, "a string"),
    "description": (str, "a string"),
    "requires_env": (list, "a list of variable names"),
    "deadline_seconds": (int, "a positive integer"),
    "max_attempts": (int, "a positive integer"),
    "input_schema": (dict, "an object"),
    "price": (dict, "an object"),
}
# Optional keys: key -> (accepted type, human description).
OPTIONAL_KEYS = {
    "input_map": (dict, "an object of input field -> provider field"),
}
PRICE_KEYS = frozenset({"micros", "tier", "tiers", "per"})



def _check_uri(value: object) -> bool:
    """True for an absolute URL with a scheme and a host (strings only; others pass)."""
    if not isinstance(value, str):
        return True
    if any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


# jsonschema checks "uri" only when an optional URI library is installed; register our
# own so URLs are always checked.
FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checks("uri")(_check_uri)


class CatalogError(Exception):
    """The catalog file is unreadable or an entry in it is invalid."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the catalog, validated."""

    id: str
    provider: str
    name: str
    kind: str
    adapter: str
    upstream: str
    description: str
    input_schema: dict
    price: dict
    deadline_seconds: int
    max_attempts: int
    requires_env: tuple[str, ...]
    #: Renames of input fields for pass-through adapters (replicate, fal); see docs/providers.md.
    input_map: dict = field(default_factory=dict)
    #: Listed by the packaged catalog (not local, not operator-added): an upstream hosted
    #: Runbase offers it under the same id, so it may be routed there.
    public: bool = False

    def __hash__(self) -> int:
        return hash(self.id)

    @functools.cached_property
    def validator(self) -> Draft202012Validator:
        """The input schema's validator, built on first use and kept with the spec: building
        one compiles the schema's references and formats, which costs more than validating."""
        return Draft202012Validator(self.input_schema, format_checker=FORMAT_CHECKER)

    def missing_env(self, env: Mapping[str, str]) -> list[str]:
        """Names of the variables that are unset or empty in ``env`` and keep this model
        from running; [] when an upstream Runbase stands in for a missing provider."""
        if self.adapter == UPSTREAM_ADAPTER:
            return _unset(UPSTREAM_ENV, env)
        own = _unset(self.requires_env, env)
        if own and self.public and not _unset(UPSTREAM_ENV, env):
            return []
        return own

    def is_available(self, env: Mapping[str, str]) -> bool:
        """True when every variable the model needs is set in ``env``."""
        return not self.missing_env(env)

    def effective_adapter(self, env: Mapping[str, str]) -> str:
        """The adapter that serves this model with these variables (see effective_adapter)."""
        return effective_adapter(self, env)

    @property
    def properties(self) -> dict:
        """The input schema's properties, in schema order."""
        return self.input_schema.get("properties", {})


def _unset(names, env: Mapping[str, str]) -> list[str]:
    """The names that are unset or empty in ``env``."""
    return [name for name in names if not env.get(name)]


def effective_adapter(spec: ModelSpec, env: Mapping[str, str]) -> str:
    """The adapter name that runs ``spec`` given the provider variables in ``env``.

    The one routing rule: a model forced upstream (``"adapter": "runbase"``) always goes
    there; a public model whose own credentials are missing goes there when the upstream
    variables are set; everything else uses its catalog adapter.
    """
    if spec.adapter == UPSTREAM_ADAPTER:
        return UPSTREAM_ADAPTER
    if spec.public and _unset(spec.requires_env, env) and not _unset(UPSTREAM_ENV, env):
        return UPSTREAM_ADAPTER
    return spec.adapter


class Catalog:
    """All models known to this server, by id."""

    def __init__(self, specs: list[ModelSpec]):
        self._by_id = {spec.id: spec for spec in specs}

    @classmethod
    def load(cls, path: str | None = None, override_path: str | None = None, *,
             adapters: Collection[str] | None = None) -> "Catalog":
        """Load and validate the catalog at ``path`` (default: the packaged one), with the
        operator's ``override_path`` merged over it; raises CatalogError on any problem.

        ``adapters`` are the adapter names this server has (the provider registry's); every
        entry must name one of them. None skips that check, for tools that only read."""
        entries = _read_entries(Path(path) if path else PACKAGED_PATH)
        listed = set(entries)  # models an upstream Runbase offers under the same id
        if override_path:
            _merge_overrides(entries, _read_entries(Path(override_path)))
        return cls([_build_spec(entry, listed=entry["id"] in listed, adapters=adapters)
                    for entry in entries.values()])

    def get(self, model_id: str) -> ModelSpec | None:
        """The model with this id, or None."""
        return self._by_id.get(model_id)

    def all(self) -> list[ModelSpec]:
        """Every model: local ones first, then by provider, then by id."""
        return sorted(self._by_id.values(),
                      key=lambda s: (s.provider != "local", s.provider, s.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_id


# --- loading -----------------------------------------------------------------------------


def _read_entries(path: Path) -> dict[str, dict]:
    """Read one catalog file into {id: entry}, checking only its outer shape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise CatalogError(f"catalog {path}: expected an object with a \"models\" list")
    entries: dict[str, dict] = {}
    for index, entry in enumerate(models):
        model_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(model_id, str):
            raise CatalogError(f"catalog {path}: models[{index}] has no string \"id\"")
        if model_id in entries:
            raise CatalogError(f"model {model_id}: listed twice in {path}")
        entries[model_id] = entry
    return entries


def _merge_overrides(entries: dict[str, dict], overrides: dict[str, dict]) -> None:
    """Merge each override shallowly over the packaged entry with its id, or add it."""
    for model_id, override in overrides.items():
        entries[model_id] = {**entries.get(model_id, {}), **override}


def _build_spec(entry: dict, *, listed: bool = False,
                adapters: Collection[str] | None = None) -> ModelSpec:
    """Validate one complete entry and turn it into a ModelSpec; ``listed`` says whether it
    comes from the packaged (public) catalog rather than from the operator's file."""
    model_id = entry["id"]
    try:
        _check_entry_keys(entry)
        _check_entry_values(entry, adapters)
        _check_schema(entry["input_schema"])
        _check_price(entry["price"], entry["input_schema"])
        _check_input_map(entry)
    except CatalogError as exc:
        raise CatalogError(f"model {model_id}: {exc}") from None
    return ModelSpec(
        id=model_id, provider=model_id.split("/", 1)[0], name=entry["name"],
        kind=entry["kind"], adapter=entry["adapter"], upstream=entry["upstream"],
        description=entry["description"], input_schema=copy.deepcopy(entry["input_schema"]),
        price=copy.deepcopy(entry["price"]), deadline_seconds=entry["deadline_seconds"],
        max_attempts=entry["max_attempts"], requires_env=tuple(entry["requires_env"]),
        input_map=dict(entry.get("input_map", {})),
        public=listed and entry["adapter"] != "local")


def _check_entry_keys(entry: dict) -> None:
    """Every required key present with the right type, and no unknown keys (catches typos)."""
    unknown = sorted(set(entry) - set(ENTRY_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise CatalogError(f"unknown key(s): {', '.join(unknown)}")
    for key, (kind, words) in OPTIONAL_KEYS.items():
        if key in entry and not isinstance(entry[key], kind):
            raise CatalogError(f"\"{key}\" must be {words}")
    for key, (kind, words) in ENTRY_KEYS.items():
        if key not in entry:
            raise CatalogError(f"missing \"{key}\"")
        value = entry[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CatalogError(f"\"{key}\" must be {words}")


def _check_entry_values(entry: dict, adapters: Collection[str] | None) -> None:
    """The values of the scalar keys are in range."""
    if not ID_RE.match(entry["id"]):
        raise CatalogError("id must look like provider/model-name "
                           "(lower-case provider, then letters, digits, . _ / -)")
    if entry["kind"] not in KINDS:
        raise CatalogError(f"kind must be one of: {', '.join(sorted(KINDS))}")
    if adapters is not None and entry["adapter"] not in adapters:
        raise CatalogError(f"unknown adapter {entry['adapter']!r} "
                           f"(known: {', '.join(sorted(adapters))})")
    for key in ("name", "upstream"):
        if not entry[key].strip():
            raise CatalogError(f"\"{key}\" must not be empty")
    for key in ("deadline_seconds", "max_attempts"):
        if entry[key] < 1:
            raise CatalogError(f"\"{key}\" must be a positive integer")
    for name in entry["requires_env"]:
        if not isinstance(name, str) or not ENV_RE.match(name):
            raise CatalogError(f"requires_env entry {name!r} is not an environment variable name")


def _check_input_map(entry: dict) -> None:
    """input_map renames schema fields for pass-through adapters: ``{"image_urls": "image"}``
    sends the list as ``image``; ``"image[0]"`` sends only its first item."""
    mapping = entry.get("input_map")
    if not mapping:
        return
    if entry["adapter"] not in PASSTHROUGH_ADAPTERS:
        raise CatalogError("input_map is only used by the "
                           + " and ".join(sorted(PASSTHROUGH_ADAPTERS)) + " adapters")
    props = entry["input_schema"]["properties"]
    for source, target in mapping.items():
        if source not in props:
            raise CatalogError(f"input_map field {source!r} is not a property of the input")
        if not isinstance(target, str) or not INPUT_MAP_TARGET_RE.match(target):
            raise CatalogError(f"input_map target for {source!r} must be a field name, "
                               "optionally followed by [0]")


@functools.lru_cache(maxsize=1024)
def _metaschema_problem(schema_json: str) -> str | None:
    """Why a schema (as canonical JSON) breaks the draft 2020-12 metaschema, or None.

    Cached: checking against the metaschema is a pure function and the slowest part of
    loading the catalog; every app instance (each test, each gunicorn worker) loads it.
    """
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as exc:
        return exc.message
    return None


def _check_schema(schema: dict) -> None:
    """A valid draft 2020-12 object schema that requires a string prompt, with valid defaults."""
    problem = _metaschema_problem(json.dumps(schema, sort_keys=True))
    if problem:
        raise CatalogError(f"input_schema is not a valid JSON Schema: {problem}")
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, dict):
        raise CatalogError("input_schema must be of type object with properties")
    if "prompt" not in schema.get("required", []):
        raise CatalogError("input_schema must require \"prompt\"")
    prompt = props.get("prompt")
    if not isinstance(prompt, dict) or prompt.get("type") != "string":
        raise CatalogError("input_schema property \"prompt\" must be of type string")
    for name, prop in props.items():
        if isinstance(prop, dict) and "default" in prop:
            _check_default(name, prop)


def _check_default(name: str, prop: dict) -> None:
    """A property's default must itself be valid for that property."""
    validator = Draft202012Validator(prop, format_checker=FORMAT_CHECKER)
    error = next(iter(validator.iter_errors(prop["default"])), None)
    if error is not None:
        raise CatalogError(f"default of \"{name}\" is invalid: {error.message}")


def _check_price(price: dict, schema: dict) -> None:
    """The price is one flat amount or one tier table, optionally times a numeric field."""
    unknown = sorted(set(price) - PRICE_KEYS)
    if unknown:
        raise CatalogError(f"price has unknown key(s): {', '.join(unknown)}")
    if ("micros" in price) == ("tiers" in price):
        raise CatalogError("price must have exactly one of \"micros\" or \"tiers\"")
    props = schema["properties"]
    required = set(schema.get("required", []))
    if "micros" in price:
        _check_micros("price.micros", price["micros"])
        if "tier" in price:
            raise CatalogError("price.tier is only allowed with price.tiers")
    else:
        _check_tiers(price, props, required)
    if "per" in price:
        _check_per(price["per"], props, required)


def _check_micros(where: str, value: object) -> None:
    """An amount is a non-negative integer of micro-USD."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CatalogError(f"{where} must be a non-negative integer (micro-USD)")


def _check_tiers(price: dict, props: dict, required: set) -> None:
    """The tier table covers exactly the enum values of the tier field."""
    field = price.get("tier")
    prop = props.get(field) if isinstance(field, str) else None
    if not isinstance(prop, dict) or not isinstance(prop.get("enum"), list):
        raise CatalogError(f"price.tier {field!r} must name an enum property of the input")
    _check_priceable(field, prop, required)
    tiers = price["tiers"]
    if not isinstance(tiers, dict):
        raise CatalogError("price.tiers must be an object")
    expected = {str(value) for value in prop["enum"]}
    missing, extra = sorted(expected - set(tiers)), sorted(set(tiers) - expected)
    if missing or extra:
        raise CatalogError(f"price.tiers must cover exactly the values of \"{field}\" "
                           f"(missing: {', '.join(missing) or '-'}; "
                           f"unexpected: {', '.join(extra) or '-'})")
    for key, value in tiers.items():
        _check_micros(f"price.tiers.{key}", value)


def _check_per(field: object, props: dict, required: set) -> None:
    """The multiplier field exists and is an integer or a numeric-string enum."""
    prop = props.get(field) if isinstance(field, str) else None
    if not isinstance(prop, dict):
        raise CatalogError(f"price.per {field!r} is not a property of the input")
    numeric_enum = isinstance(prop.get("enum"), list) and all(
        isinstance(v, str) and v.isdigit() for v in prop["enum"])
    if prop.get("type") != "integer" and not numeric_enum:
        raise CatalogError(f"price.per field \"{field}\" must be an integer "
                           "or an enum of numeric strings")
    _check_priceable(field, prop, required)


def _check_priceable(field: str, prop: dict, required: set) -> None:
    """A field the price depends on must always have a value: required, or a default."""
    if "default" not in prop and field not in required:
        raise CatalogError(f"price field \"{field}\" must be required or have a default")
