"""The OpenAPI document as clients are generated from it: every catalog model with a named,
typed body, free-form objects that stay open, required fields the server always sends,
the headers, links, error codes and webhook the server really uses, and a document that
validates (openapi-spec-validator here; Redocly in test_openapi_lint.py)."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from runbase_web.api.openapi import build_document
from runbase_web.api.openapi_requests import component_stems, enum_member_name, pascal_stem
from runbase_web.catalog import Catalog
from runbase_web.presenters.api_errors import api_error_classes

SCHEMAS = "#/components/schemas/"


def served(client) -> dict:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()


def schema(document: dict, ref_or_name: str) -> dict:
    return document["components"]["schemas"][ref_or_name.removeprefix(SCHEMAS)]


def test_the_served_document_is_valid_openapi_3_1(client):
    document = served(client)
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_catalog_model_has_a_named_variant_discriminated_on_model(app, client):
    document = served(client)
    catalog = Catalog.load()
    body = document["paths"]["/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": SCHEMAS + "CreateRunRequest"}
    known = schema(document, "CatalogModelRunRequest")
    mapping = known["discriminator"]["mapping"]
    assert known["discriminator"]["propertyName"] == "model"
    # Available here or not: all 19, not only the three local ones.
    assert set(mapping) == {spec.id for spec in catalog.all()} and len(mapping) == 19
    assert sorted(option["$ref"] for option in known["oneOf"]) == sorted(mapping.values())
    gpt = schema(document, mapping["openai/gpt-image-1"])
    assert mapping["openai/gpt-image-1"] == SCHEMAS + "OpenaiGptImage1RunRequest"
    assert gpt["properties"]["model"] == {"const": "openai/gpt-image-1"}
    assert gpt["properties"]["input"] == {"$ref": SCHEMAS + "OpenaiGptImage1Input"}
    assert "Not available on this server until OPENAI_API_KEY is set" in gpt["description"]
    sketch = schema(document, mapping["local/sketch"])
    assert "Available on this server." in sketch["description"]
    assert schema(document, "LocalSketchInput")["required"] == ["prompt"]


def test_a_general_variant_takes_models_the_document_does_not_list(client):
    document = served(client)
    other = schema(document, "OtherModelRunRequest")
    model = other["properties"]["model"]
    assert re.fullmatch(model["pattern"], "acme/brand-new-model")
    assert "openai/gpt-image-1" in model["not"]["enum"]  # the variants stay exclusive
    assert other["properties"]["input"] == {"type": "object", "additionalProperties": True}
    assert schema(document, "CreateRunRequest")["oneOf"] == [
        {"$ref": SCHEMAS + "CatalogModelRunRequest"}, {"$ref": SCHEMAS + "OtherModelRunRequest"}]


def test_enum_members_get_names_instead_of_value_n(client):
    document = served(client)
    ratio = schema(document, "LocalSketchInput")["properties"]["aspect_ratio"]
    assert dict(zip(ratio["enum"], ratio["x-enum-varnames"]))["16:9"] == "ASPECT_RATIO_16_9"
    resolution = schema(document, "OpenaiGptImage2Input")["properties"]["resolution"]
    assert resolution["x-enum-varnames"] == ["RESOLUTION_1K", "RESOLUTION_2K", "RESOLUTION_4K"]
    assert enum_member_name("aspect_ratio", "auto") == "AUTO"
    assert enum_member_name("duration", 5) == "DURATION_5"


def test_component_names_stay_unique_when_generators_fold_them():
    assert pascal_stem("openai/gpt-image-1.5") == "OpenaiGptImage1_5"
    assert pascal_stem("kling/kling-3.0") == "KlingKling3_0"

    class Spec:
        def __init__(self, model_id):
            self.id = model_id
    specs = [Spec("acme/a-b"), Spec("acme/ab"), Spec("run/x"), Spec("other/model")]
    stems = component_stems(specs, reserved=["Run", "RunXInput", "OtherModelRunRequest"])
    assert stems == {"acme/a-b": "AcmeAB", "acme/ab": "AcmeAb2", "run/x": "RunX2",
                     "other/model": "OtherModel2"}


def test_free_form_objects_stay_open(client):
    document = served(client)
    run, model = schema(document, "Run"), schema(document, "Model")
    assert run["properties"]["input"]["additionalProperties"] is True
    assert model["properties"]["inputSchema"]["additionalProperties"] is True
    assert model["properties"]["price"] == {"$ref": SCHEMAS + "Price"}
    assert schema(document, "Price")["properties"]["tiers"]["additionalProperties"] == {
        "type": "integer", "minimum": 0}
    for name, definition in document["components"]["schemas"].items():
        if definition.get("type") == "object" and not definition.get("properties"):
            assert "additionalProperties" in definition, name


def test_fields_the_server_always_sends_are_required(client, auth):
    document = served(client)
    account = client.get("/api/v1/account", headers=auth).get_json()
    assert set(schema(document, "ApiKeyUsage")["required"]) == set(account["apiKey"])
    model = client.get("/api/v1/models/openai/gpt-image-1").get_json()
    assert set(schema(document, "Model")["required"]) == set(model)
    run = client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": "x"}},
                      headers=auth).get_json()
    assert set(schema(document, "Run")["required"]) == set(run)


def test_idempotency_key_schema_says_what_the_server_accepts(client):
    create = served(client)["paths"]["/runs"]["post"]
    key = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert {k: v for k, v in key["schema"].items() if k != "pattern"} == {
        "type": "string", "minLength": 1, "maxLength": 255}
    pattern = re.compile(key["schema"]["pattern"])
    assert pattern.search("order-42") and pattern.search(" é ")
    assert not pattern.search("   ") and not pattern.search("a\x00b")
    assert "characters, not bytes" in key["description"]


def test_headers_links_and_default_responses_are_documented(client):
    paths = served(client)["paths"]
    created = paths["/runs"]["post"]["responses"]["201"]
    assert set(created["headers"]) == {"Location", "Idempotent-Replayed", "X-RateLimit-Limit",
                                       "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    assert created["links"]["GetRun"] == {"operationId": "getRun",
                                          "parameters": {"id": "$response.body#/id"},
                                          "description": "Poll the run until it ends."}
    assert created["links"]["CancelRun"]["operationId"] == "cancelRun"
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert responses["default"] == {"$ref": "#/components/responses/UnexpectedError"}, path
            assert "400" in responses, (method, path)


def test_every_create_variant_takes_a_webhook(client):
    document = served(client)
    variants = [schema(document, ref["$ref"])
                for ref in schema(document, "CatalogModelRunRequest")["oneOf"]]
    for variant in variants + [schema(document, "OtherModelRunRequest")]:
        webhook = variant["properties"]["webhook"]
        assert webhook["type"] == ["string", "null"] and webhook["maxLength"] == 2048
        assert re.search(webhook["pattern"], "https://hooks.example.com/runbase")
        assert not re.search(webhook["pattern"], "https://hooks.example.com/a b")


def test_error_codes_are_an_enum_generated_from_the_error_classes(client):
    document = served(client)
    codes = schema(document, "ErrorCode")
    assert set(codes["enum"]) == {cls.code for cls in api_error_classes()}
    assert "RATE_LIMITED" in codes["enum"] and "hosted Runbase service" in codes["description"]
    code = schema(document, "ErrorDetail")["properties"]["code"]
    assert code["anyOf"][0] == {"$ref": SCHEMAS + "ErrorCode"}  # and any later code
    responses = document["components"]["responses"]
    assert "`method_not_allowed` (405)" in responses["UnexpectedError"]["description"]
    assert "`internal_error` (500)" in responses["UnexpectedError"]["description"]
    assert "`RATE_LIMITED` (429)" in responses["RateLimited"]["description"]


def test_get_model_has_examples_that_answer_200(client):
    operation = served(client)["paths"]["/models/{provider}/{name}"]["get"]
    values = {p["name"]: p["example"] for p in operation["parameters"]}
    answer = client.get(f"/api/v1/models/{values['provider']}/{values['name']}")
    assert answer.status_code == 200
    example = operation["responses"]["200"]["content"]["application/json"]["example"]
    assert example == answer.get_json()


def test_the_create_example_creates_a_run(client, auth):
    body = served(client)["paths"]["/runs"]["post"]["requestBody"]["content"]["application/json"]
    example = body["examples"]["example"]["value"]
    assert client.post("/api/v1/runs", json=example, headers=auth).status_code == 201


def test_webhook_payloads_say_whether_their_urls_are_absolute(client):
    relative = served(client)["webhooks"]["runEnded"]["post"]
    payload = relative["requestBody"]["content"]["application/json"]["schema"]
    urls = payload["properties"]["output"]["oneOf"][1]["properties"]["urls"]
    assert urls["items"] == {"type": "string", "format": "uri-reference"}
    assert "RUNBASE_PUBLIC_URL" in urls["description"]
    assert {p["name"] for p in relative["parameters"]} == {
        "webhook-id", "webhook-timestamp", "webhook-signature"}
    absolute = build_document(Catalog.load(), "https://gen.example.com", {})
    payload = absolute["webhooks"]["runEnded"]["post"]["requestBody"]["content"]
    assert payload["application/json"]["schema"] == {"$ref": SCHEMAS + "Run"}


@pytest.mark.parametrize("app_config", [{"PUBLIC_URL": "https://gen.example.com"}])
def test_with_a_public_url_payload_urls_are_absolute(client):
    payload = served(client)["webhooks"]["runEnded"]["post"]["requestBody"]["content"]
    assert payload["application/json"]["schema"] == {"$ref": SCHEMAS + "Run"}
