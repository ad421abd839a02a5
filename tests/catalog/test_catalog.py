"""The model catalog: packaged data, input validation, pricing, forms and money formatting."""

import copy
import importlib
import json

import pytest
from jsonschema import Draft202012Validator
from werkzeug.datastructures import MultiDict

from runbase_web.catalog import PACKAGED_PATH, Catalog, CatalogError, InputError, price, validate_input
from runbase_web.presenters.forms import FormField, coerce_form, form_fields
from runbase_web.providers import registry

PUBLIC_IDS = {
    "google/nano-banana", "google/nano-banana-2", "google/nano-banana-pro",
    "openai/gpt-image-1", "openai/gpt-image-1.5", "openai/gpt-image-2",
    "bytedance/seedream-4.5", "bytedance/seedream-5-lite",
    "bytedance/seedance-1-lite", "bytedance/seedance-1-pro", "bytedance/seedance-1.5-pro",
    "bytedance/seedance-2", "bytedance/seedance-2-fast",
    "kling/kling-3.0", "google/veo-3", "hailuo/pro",
}
LOCAL_IDS = {"local/sketch", "local/sketch-video", "local/test"}


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load()


def packaged_entries():
    return json.loads(PACKAGED_PATH.read_text(encoding="utf-8"))["models"]


def write_catalog(tmp_path, entries, name="models.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"models": entries}), encoding="utf-8")
    return str(path)


def entry_for(model_id):
    return copy.deepcopy(next(e for e in packaged_entries() if e["id"] == model_id))


# --- the packaged catalog ----------------------------------------------------------------


def test_packaged_catalog_has_every_documented_model(catalog):
    assert {spec.id for spec in catalog.all()} == PUBLIC_IDS | LOCAL_IDS


def test_all_lists_local_first_then_provider_then_id(catalog):
    ids = [spec.id for spec in catalog.all()]
    assert ids[:3] == ["local/sketch", "local/sketch-video", "local/test"]
    rest = [(i.split("/")[0], i) for i in ids[3:]]
    assert rest == sorted(rest)


def test_every_model_is_well_formed(catalog):
    for spec in catalog.all():
        assert spec.provider == spec.id.split("/")[0]
        assert spec.deadline_seconds == (600 if spec.kind == "image" else 1800)
        assert spec.max_attempts == 3
        assert spec.input_schema["additionalProperties"] is False
        assert spec.input_schema["required"] == ["prompt"]
        for name, prop in spec.input_schema["properties"].items():
            assert prop.get("title") and prop.get("description"), (spec.id, name)


def test_every_default_is_valid(catalog):
    for spec in catalog.all():
        for name, prop in spec.input_schema["properties"].items():
            if "default" in prop:
                assert Draft202012Validator(prop).is_valid(prop["default"]), (spec.id, name)
        # The defaults alone, plus a prompt, make a valid run.
        valid = validate_input(spec, {"prompt": "a lighthouse at dusk"})
        assert price(spec, valid) > 0


def test_local_models_need_no_env_and_others_do(catalog):
    for spec in catalog.all():
        if spec.provider == "local":
            assert spec.requires_env == () and spec.is_available({})
            # Only local/sketch takes references, and optionally: no network is needed.
            assert "image_urls" not in spec.input_schema.get("required", [])
            if spec.id != "local/sketch":
                assert "image_urls" not in spec.input_schema["properties"]
        else:
            assert spec.requires_env and not spec.is_available({})


def test_missing_env_names_unset_or_empty_variables(catalog):
    spec = catalog.get("kling/kling-3.0")
    env = {"KLING_ACCESS_KEY": "ak", "KLING_SECRET_KEY": ""}
    assert spec.missing_env(env) == ["KLING_SECRET_KEY"]
    assert spec.is_available({"KLING_ACCESS_KEY": "ak", "KLING_SECRET_KEY": "sk"})


def test_get_unknown_model_is_none(catalog):
    assert catalog.get("nope/nothing") is None


@pytest.mark.parametrize("model_id, field, expected", [
    ("google/nano-banana", "maxItems", 10),
    ("google/nano-banana-2", "maxItems", 14),
    ("openai/gpt-image-1", "maxItems", 5),
    ("openai/gpt-image-2", "maxItems", 4),
    ("bytedance/seedance-2-fast", "maxItems", 1),
    ("hailuo/pro", "maxItems", 1),
])
def test_image_url_limits(catalog, model_id, field, expected):
    assert catalog.get(model_id).input_schema["properties"]["image_urls"][field] == expected


@pytest.mark.parametrize("model_id, min_len, max_len", [
    ("openai/gpt-image-1", 1, 4000),
    ("bytedance/seedream-4.5", 1, 3000),
    ("bytedance/seedance-2-fast", 3, 20000),
    ("google/nano-banana", 1, 4000),
])
def test_prompt_limits(catalog, model_id, min_len, max_len):
    prompt = catalog.get(model_id).input_schema["properties"]["prompt"]
    assert (prompt["minLength"], prompt["maxLength"]) == (min_len, max_len)


def test_documented_defaults(catalog):
    props = catalog.get("bytedance/seedance-2-fast").input_schema["properties"]
    assert props["aspect_ratio"]["default"] == "16:9"
    assert props["resolution"]["default"] == "720p"
    assert props["duration"] == {**props["duration"], "type": "integer", "minimum": 4,
                                 "maximum": 15, "default": 5}
    assert props["generate_audio"]["default"] is False
    assert catalog.get("openai/gpt-image-1").input_schema["properties"]["aspect_ratio"][
        "default"] == "1:1"
    assert "seed" not in validate_input(catalog.get("local/sketch"), {"prompt": "x"})


# --- pricing -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_id, extra, micros", [
    ("google/nano-banana", {}, 40000),
    ("openai/gpt-image-1", {}, 50000),
    ("bytedance/seedream-4.5", {"quality": "high"}, 50000),
    ("google/nano-banana-2", {}, 60000),
    ("google/nano-banana-2", {"resolution": "2K"}, 90000),
    ("google/nano-banana-2", {"resolution": "4K"}, 130000),
    ("google/nano-banana-pro", {"resolution": "2K"}, 140000),
    ("google/nano-banana-pro", {"resolution": "4K"}, 240000),
    ("openai/gpt-image-1.5", {"quality": "high"}, 160000),
    ("openai/gpt-image-2", {"resolution": "2K"}, 70000),
    ("bytedance/seedance-2-fast", {"duration": 5, "resolution": "720p"}, 300000),
    ("bytedance/seedance-2-fast", {"duration": 10, "resolution": "480p"}, 300000),
    ("bytedance/seedance-1-lite", {"duration": "10", "resolution": "720p"}, 360000),
    ("bytedance/seedance-1-lite", {"duration": "5", "resolution": "480p"}, 90000),
    ("bytedance/seedance-1-pro", {"duration": "5", "resolution": "1080p"}, 562500),
    ("bytedance/seedance-2", {"duration": 4, "resolution": "1080p"}, 900000),
    ("kling/kling-3.0", {"mode": "pro", "duration": 10}, 1200000),
    ("kling/kling-3.0", {"mode": "4K", "duration": 3}, 750000),
    ("google/veo-3", {"resolution": "1080p"}, 1200000),
    ("hailuo/pro", {}, 490000),
    ("local/sketch", {"num_images": 3}, 3000),
    ("local/sketch-video", {"duration": 8}, 16000),
    ("local/test", {}, 100),
])
def test_price_table(catalog, model_id, extra, micros):
    spec = catalog.get(model_id)
    assert price(spec, validate_input(spec, {"prompt": "a calm sea", **extra})) == micros


def test_price_of_1080p_is_a_whole_number_and_480p_rounds_down(catalog):
    tiers = catalog.get("bytedance/seedance-1-pro").price["tiers"]
    assert tiers == {"720p": 50000, "1080p": 112500}
    assert catalog.get("bytedance/seedance-1-lite").price["tiers"] == {
        "480p": 18000, "720p": 36000, "1080p": 81000}


# --- validate_input ----------------------------------------------------------------------


def test_validate_fills_defaults_and_returns_a_new_dict(catalog):
    spec = catalog.get("google/nano-banana-2")
    raw = {"prompt": "cat"}
    valid = validate_input(spec, raw)
    assert raw == {"prompt": "cat"}
    assert valid == {"prompt": "cat", "aspect_ratio": "1:1", "resolution": "1K",
                     "image_urls": []}
    valid["image_urls"].append("https://x.example/a.png")
    assert spec.input_schema["properties"]["image_urls"]["default"] == []


def test_validate_keeps_given_values(catalog):
    spec = catalog.get("google/nano-banana-2")
    urls = ["https://img.example/a.png", "http://img.example/b.jpg"]
    valid = validate_input(spec, {"prompt": "cat", "resolution": "4K", "image_urls": urls})
    assert valid["resolution"] == "4K" and valid["image_urls"] == urls


def reject(spec, raw):
    with pytest.raises(InputError) as info:
        validate_input(spec, raw)
    return info.value


def test_missing_prompt(catalog):
    error = reject(catalog.get("openai/gpt-image-1"), {"aspect_ratio": "1:1"})
    assert (error.field, error.message) == ("prompt", "is required")
    assert str(error) == "input.prompt: is required"


def test_empty_and_too_long_prompt(catalog):
    spec = catalog.get("bytedance/seedream-4.5")
    assert reject(spec, {"prompt": ""}).message == "must not be empty"
    error = reject(spec, {"prompt": "x" * 3001})
    assert (error.field, error.message) == ("prompt", "must be at most 3000 characters")


def test_prompt_must_be_a_string(catalog):
    error = reject(catalog.get("openai/gpt-image-1"), {"prompt": 12})
    assert (error.field, error.message) == ("prompt", "must be a string")


def test_bad_enum(catalog):
    error = reject(catalog.get("openai/gpt-image-1"), {"prompt": "p", "aspect_ratio": "4:3"})
    assert error.field == "aspect_ratio"
    assert error.message == "must be one of: 1:1, 3:2, 2:3"
    assert str(error) == "input.aspect_ratio: must be one of: 1:1, 3:2, 2:3"


def test_out_of_range_integer(catalog):
    spec = catalog.get("local/sketch")
    error = reject(spec, {"prompt": "p", "num_images": 5})
    assert (error.field, error.message) == ("num_images", "must be at most 4")
    error = reject(spec, {"prompt": "p", "num_images": 0})
    assert (error.field, error.message) == ("num_images", "must be at least 1")


def test_bool_is_not_an_integer(catalog):
    error = reject(catalog.get("local/sketch"), {"prompt": "p", "num_images": True})
    assert (error.field, error.message) == ("num_images", "must be an integer")


def test_string_number_is_not_an_integer(catalog):
    error = reject(catalog.get("kling/kling-3.0"), {"prompt": "p", "duration": "5"})
    assert (error.field, error.message) == ("duration", "must be an integer")


def test_whole_float_is_stored_as_integer(catalog):
    valid = validate_input(catalog.get("local/sketch"), {"prompt": "p", "num_images": 2.0})
    assert valid["num_images"] == 2 and isinstance(valid["num_images"], int)


def test_unknown_field(catalog):
    error = reject(catalog.get("openai/gpt-image-1"), {"prompt": "p", "size": "1024x1024"})
    assert error.field == "size"
    assert error.message == "unknown field (allowed: prompt, aspect_ratio, image_urls)"


def test_too_many_image_urls(catalog):
    urls = [f"https://img.example/{i}.png" for i in range(5)]
    error = reject(catalog.get("openai/gpt-image-2"), {"prompt": "p", "image_urls": urls})
    assert (error.field, error.message) == ("image_urls", "must have at most 4 items")


@pytest.mark.parametrize("url", ["ftp://img.example/a.png", "not a url", "https://",
                                 "javascript:alert(1)", "/relative/a.png"])
def test_non_http_url(catalog, url):
    error = reject(catalog.get("openai/gpt-image-2"),
                   {"prompt": "p", "image_urls": ["https://ok.example/a.png", url]})
    assert (error.field, error.message) == ("image_urls.1", "must be an http(s) URL")


def test_image_urls_must_be_a_list(catalog):
    error = reject(catalog.get("openai/gpt-image-2"),
                   {"prompt": "p", "image_urls": "https://img.example/a.png"})
    assert (error.field, error.message) == ("image_urls", "must be an array")


def test_input_must_be_an_object(catalog):
    error = reject(catalog.get("local/test"), ["prompt"])
    assert error.field is None and str(error) == "input must be an object"


def test_first_error_is_deterministic(catalog):
    raw = {"prompt": "p", "aspect_ratio": "9:9", "resolution": "8K"}
    messages = {str(reject(catalog.get("openai/gpt-image-2"), dict(raw))) for _ in range(5)}
    assert messages == {"input.aspect_ratio: must be one of: "
                        "1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9"}


def test_seed_range(catalog):
    spec = catalog.get("local/test")
    assert validate_input(spec, {"prompt": "p", "seed": 2147483647})["seed"] == 2147483647
    assert reject(spec, {"prompt": "p", "seed": -1}).field == "seed"


# --- loading and overrides ---------------------------------------------------------------


def test_override_changes_price_and_deadline_and_adds_a_model(tmp_path):
    replicate = {
        "id": "replicate/black-forest-labs/flux-schnell", "name": "FLUX.1 schnell",
        "kind": "image", "adapter": "replicate", "upstream": "black-forest-labs/flux-schnell",
        "description": "Fast FLUX image model on Replicate.",
        "requires_env": ["REPLICATE_API_TOKEN"], "deadline_seconds": 300, "max_attempts": 2,
        "input_schema": {"type": "object", "required": ["prompt"],
                         "additionalProperties": False,
                         "properties": {"prompt": {"type": "string", "minLength": 1}}},
        "price": {"micros": 3000},
    }
    override = write_catalog(tmp_path, [
        {"id": "openai/gpt-image-1", "price": {"micros": 70000}},
        {"id": "local/test", "deadline_seconds": 3},
        replicate,
    ], "override.json")
    catalog = Catalog.load(override_path=override)
    gpt = catalog.get("openai/gpt-image-1")
    assert price(gpt, validate_input(gpt, {"prompt": "p"})) == 70000
    assert gpt.upstream == "gpt-image-1"
    assert catalog.get("local/test").deadline_seconds == 3
    added = catalog.get("replicate/black-forest-labs/flux-schnell")
    assert added.provider == "replicate" and added.requires_env == ("REPLICATE_API_TOKEN",)
    assert price(added, validate_input(added, {"prompt": "p"})) == 3000
    assert len(catalog.all()) == len(PUBLIC_IDS | LOCAL_IDS) + 1


def test_override_with_incomplete_new_model_fails(tmp_path):
    override = write_catalog(tmp_path, [{"id": "fal/fal-ai/flux", "price": {"micros": 1}}])
    with pytest.raises(CatalogError, match="fal/fal-ai/flux.*missing"):
        Catalog.load(override_path=override)


def test_missing_override_file_fails(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        Catalog.load(override_path=str(tmp_path / "absent.json"))


def broken(tmp_path, model_id, change):
    entry = entry_for(model_id)
    change(entry)
    with pytest.raises(CatalogError) as info:
        Catalog.load(write_catalog(tmp_path, [entry]), adapters=registry.ADAPTERS)
    assert entry["id"] in str(info.value)
    return str(info.value)


def test_tiers_missing_an_enum_value(tmp_path):
    message = broken(tmp_path, "google/nano-banana-2",
                     lambda e: e["price"]["tiers"].pop("4K"))
    assert "missing: 4K" in message


def test_tiers_with_an_extra_value(tmp_path):
    message = broken(tmp_path, "google/nano-banana-2",
                     lambda e: e["price"]["tiers"].update({"8K": 1}))
    assert "unexpected: 8K" in message


def test_bad_default(tmp_path):
    def change(entry):
        entry["input_schema"]["properties"]["aspect_ratio"]["default"] = "7:7"
    assert "aspect_ratio" in broken(tmp_path, "openai/gpt-image-1", change)


def test_bad_id(tmp_path):
    assert "id must look like" in broken(tmp_path, "local/test",
                                         lambda e: e.update(id="Local/Test"))
    assert "id must look like" in broken(tmp_path, "local/test",
                                         lambda e: e.update(id="no-slash"))


def test_unknown_adapter(tmp_path):
    assert "unknown adapter" in broken(tmp_path, "openai/gpt-image-1",
                                       lambda e: e.update(adapter="dalle"))


def test_the_adapter_names_are_the_registry_s():
    """One list of adapters: the registry's. Each names a class that exists, and every
    packaged model uses one of them."""
    for name, (module_name, class_name) in registry.ADAPTERS.items():
        module = importlib.import_module(f"runbase_web.providers.{module_name}")
        assert hasattr(module, class_name), name
    assert {spec.adapter for spec in Catalog.load().all()} <= set(registry.ADAPTERS)


@pytest.mark.parametrize("change, words", [
    (lambda e: e.update(kind="audio"), "kind"),
    (lambda e: e.pop("upstream"), 'missing "upstream"'),
    (lambda e: e.update(prce={}), "unknown key"),
    (lambda e: e.update(deadline_seconds="600"), "deadline_seconds"),
    (lambda e: e.update(max_attempts=True), "max_attempts"),
    (lambda e: e.update(requires_env=["openai key"]), "requires_env"),
    (lambda e: e["input_schema"].update(required=[]), 'require "prompt"'),
    (lambda e: e["input_schema"].update(type="array"), "type object"),
    (lambda e: e["input_schema"]["properties"]["prompt"].update(minLength=-1),
     "not a valid JSON Schema"),
    (lambda e: e.update(price={}), "exactly one"),
    (lambda e: e.update(price={"micros": 1, "tiers": {}}), "exactly one"),
    (lambda e: e.update(price={"micros": 0.05}), "non-negative integer"),
    (lambda e: e.update(price={"micros": 1, "per": "aspect_ratio"}), "per"),
    (lambda e: e.update(price={"micros": 1, "per": "colour"}), "per"),
    (lambda e: e.update(price={"tier": "prompt", "tiers": {}}), "enum property"),
])
def test_other_broken_entries(tmp_path, change, words):
    assert words in broken(tmp_path, "openai/gpt-image-1", change)


def test_per_field_must_have_a_value(tmp_path):
    def change(entry):
        del entry["input_schema"]["properties"]["num_images"]["default"]
    assert "num_images" in broken(tmp_path, "local/sketch", change)


def test_duplicate_ids_fail(tmp_path):
    entry = entry_for("local/test")
    with pytest.raises(CatalogError, match="local/test.*twice"):
        Catalog.load(write_catalog(tmp_path, [entry, entry]))


def test_file_without_models_list_fails(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(CatalogError, match="models"):
        Catalog.load(str(path))


# --- forms -------------------------------------------------------------------------------


def test_form_fields_order_and_widgets(catalog):
    fields = form_fields(catalog.get("bytedance/seedance-2-fast"))
    assert [(f.name, f.widget) for f in fields] == [
        ("prompt", "textarea"), ("aspect_ratio", "select"), ("resolution", "select"),
        ("duration", "number"), ("generate_audio", "checkbox"), ("image_urls", "url_list")]
    prompt, aspect, _, duration, audio, urls = fields
    assert prompt.required and not aspect.required
    assert aspect.options == ("1:1", "3:4", "4:3", "9:16", "16:9", "21:9", "adaptive")
    assert aspect.default == "16:9" and aspect.label == "Aspect ratio" and aspect.help
    assert (duration.minimum, duration.maximum, duration.default) == (4, 15, 5)
    assert audio.default is False
    assert urls.max_items == 1
    assert prompt.max_length == 20000
    assert all(isinstance(f, FormField) for f in fields)


def test_form_field_for_optional_seed(catalog):
    seed = next(f for f in form_fields(catalog.get("local/sketch")) if f.name == "seed")
    assert seed.widget == "number" and seed.default is None and not seed.required


def test_coerce_form_types_and_drops(catalog):
    spec = catalog.get("bytedance/seedance-2-fast")
    form = MultiDict([("prompt", "a fox"), ("aspect_ratio", "9:16"), ("resolution", ""),
                      ("duration", "7"), ("image_urls", ""), ("csrf_token", "x")])
    assert coerce_form(spec, form) == {"prompt": "a fox", "aspect_ratio": "9:16",
                                       "duration": 7, "generate_audio": False}


def test_coerce_form_checkbox_present(catalog):
    spec = catalog.get("bytedance/seedance-2-fast")
    assert coerce_form(spec, {"prompt": "p", "generate_audio": "on"})["generate_audio"] is True


def test_coerce_form_bad_number_is_reported_by_validation(catalog):
    spec = catalog.get("local/sketch")
    data = coerce_form(spec, {"prompt": "p", "num_images": "three", "seed": " "})
    assert data == {"prompt": "p", "num_images": "three"}
    error = reject(spec, data)
    assert (error.field, error.message) == ("num_images", "must be an integer")


def test_coerce_form_url_list_from_multi_values_and_text(catalog):
    spec = catalog.get("google/nano-banana-2")
    multi = MultiDict([("prompt", "p"), ("image_urls", "https://a.example/1.png"),
                       ("image_urls", " "), ("image_urls", "https://a.example/2.png")])
    assert coerce_form(spec, multi)["image_urls"] == ["https://a.example/1.png",
                                                      "https://a.example/2.png"]
    text = {"prompt": "p", "image_urls": "https://a.example/1.png\r\n\n  https://a.example/2.png \n"}
    assert coerce_form(spec, text)["image_urls"] == ["https://a.example/1.png",
                                                     "https://a.example/2.png"]
    as_list = {"prompt": "p", "image_urls": ["https://a.example/1.png", ""]}
    assert coerce_form(spec, as_list)["image_urls"] == ["https://a.example/1.png"]


def test_coerce_form_empty_prompt_is_dropped(catalog):
    spec = catalog.get("local/test")
    data = coerce_form(spec, {"prompt": "   ", "delay_ms": "250", "outcome": "fail"})
    assert data == {"delay_ms": 250, "outcome": "fail"}
    assert reject(spec, data).field == "prompt"


def test_coerced_form_round_trips_through_validation(catalog):
    spec = catalog.get("local/sketch")
    data = coerce_form(spec, {"prompt": "hills", "num_images": "2", "seed": "42",
                              "resolution": "1K", "aspect_ratio": "16:9"})
    valid = validate_input(spec, data)
    assert valid == {"prompt": "hills", "num_images": 2, "seed": 42, "resolution": "1K",
                     "aspect_ratio": "16:9"}
    assert price(spec, valid) == 2000
