"""GET /api/v1/openapi.json: OpenAPI 3.1, built from the catalog schemas the API validates
with and the error classes it answers with.

The document is a product: clients are generated from it. So it describes every catalog
model (not only those this server can run today), names its schemas, marks as required
what the server always sends, and lists the headers, links and error codes the server
really uses (tests generate Python and TypeScript clients from it and run them).
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import current_app, jsonify

from .. import state
from ..catalog import Catalog
from ..presenters.examples import example_model, sample_input
from ..urls import absolute_url, public_base_url
from .blueprint import bp
from .models import model_to_api
from .openapi_requests import NO_NUL, request_schemas
from .openapi_schemas import (ACCOUNT, API_KEY_USAGE, FILE, HEADERS, MODEL, MODEL_LIST, PRICE,
                              RATE_HEADERS, RATE_LIMIT_RULE, RUN, RUN_LIST, RUN_STATUS,
                              error_responses, error_schemas, json_content, ref, run_output,
                              status_response, webhook_payload)

#: The error statuses of every operation that takes an API key.
_KEYED = (401, 403, 429, 503)
_RUN_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "The run's id (`run_...`)."}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Send one (e.g. a UUID) and retry with it: the same key and body within 24 h "
                   "return the first run, charged once; the same key with another body is 422 "
                   "`idempotency_key_reused`. 1 to 255 characters, not only spaces; a non-ASCII "
                   "key is read as UTF-8 and counted in characters, not bytes.",
    # At least one character that is not a space, and no NUL (services.idempotency.check_key).
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"},
}
_LINK_DESCRIPTIONS = {"getRun": "Poll the run until it ends.",
                      "cancelRun": "Stop the run and get its cost back."}


def _run_links(*operations: str) -> dict:
    """Links from an answer holding a run to operations on that run (Schemathesis' stateful
    phase follows them; so can client generators)."""
    return {op[0].upper() + op[1:]: {"operationId": op, "parameters": {"id": "$response.body#/id"},
                                     "description": _LINK_DESCRIPTIONS[op]}
            for op in operations}


def _answer(description: str, schema: dict, *, headers: dict | None = None,
            links: dict | None = None, **media) -> dict:
    """A success response with a JSON body."""
    response = {"description": description, "content": json_content(schema, **media)}
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return response


def _responses(success: dict, *statuses: int) -> dict:
    """The success answers, 400 and the listed error statuses, and `default` for the rest.

    Every operation may answer 400: a Host this server does not answer to, or a NUL in a
    query value, is refused before the operation runs."""
    errors = {str(status): status_response(status) for status in sorted({400, *statuses})}
    return {**success, **errors, "default": ref("UnexpectedError", "responses")}


def _create_run(catalog: Catalog, env: Mapping[str, str]) -> dict:
    spec = example_model(catalog, env)
    examples = {}
    if "prompt" in spec.properties:
        examples = {"examples": {"example": {"summary": f"A run of {spec.id}", "value": {
            "model": spec.id, "input": sample_input(spec)}}}}
    created_headers = {"Location": ref("Location", "headers"),
                       "Idempotent-Replayed": ref("Idempotent-Replayed", "headers"), **RATE_HEADERS}
    return {
        "operationId": "createRun", "tags": ["Runs"], "summary": "Create a run",
        "description": "Validates the input, charges the run's cost and queues it. Poll "
                       "`getRun` or pass `webhook` to learn when it ends.",
        "parameters": [_IDEMPOTENCY_KEY],
        "requestBody": {"required": True,
                        "content": json_content(ref("CreateRunRequest"), **examples)},
        "responses": _responses(
            {"201": _answer("Created (or, with `Idempotent-Replayed`, the earlier run)",
                            ref("Run"), headers=created_headers,
                            links=_run_links("getRun", "cancelRun"))},
            402, 413, 422, *_KEYED),
    }


def _list_runs() -> dict:
    query = [
        {"name": "limit", "in": "query", "description": "Page size (default 20).",
         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        {"name": "after", "in": "query", "schema": {"type": "string", "pattern": NO_NUL},
         "description": "The previous page's `nextCursor`; an unknown run id is 404."},
        {"name": "status", "in": "query", "schema": ref("RunStatus"),
         "description": "Only runs in this status (an empty value is 400 `invalid_query`)."},
        {"name": "model", "in": "query", "schema": {"type": "string", "pattern": NO_NUL},
         "description": "Only runs of this model id."},
    ]
    return {"operationId": "listRuns", "tags": ["Runs"], "summary": "List runs, newest first",
            "parameters": query,
            "responses": _responses({"200": _answer("A page of runs", ref("RunList"),
                                                    headers=RATE_HEADERS)},
                                    404, *_KEYED)}


def _run_operation(operation_id: str, summary: str, follow: str) -> dict:
    return {"operationId": operation_id, "tags": ["Runs"], "summary": summary,
            "parameters": [_RUN_ID],
            "responses": _responses({"200": _answer("The run", ref("Run"), headers=RATE_HEADERS,
                                                    links=_run_links(follow))},
                                    404, *_KEYED)}


def _get_model(catalog: Catalog, env: Mapping[str, str]) -> dict:
    spec = example_model(catalog, env)
    provider, name = spec.id.split("/", 1)
    parameters = [
        {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"},
         "example": provider, "description": "The part of the model id before the first `/`."},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "example": name, "description": "The rest of the model id (e.g. `sketch` for "
                                         "`local/sketch`; it may hold `/`), not its display name."},
    ]
    return {"operationId": "getModel", "tags": ["Models"], "security": [], "summary": "One model",
            "parameters": parameters,
            "responses": _responses({"200": _answer("The model", ref("Model"),
                                                    example=model_to_api(spec, env))}, 404)}


_UPLOAD_LIMITS = ("PNG, JPEG or WebP are kept in their type; GIF, BMP, TIFF and other still "
                  "images become PNG; anything else, animated images, files over the "
                  "server's upload limit (RUNBASE_UPLOAD_MAX_BYTES, default 20 MB; 413 "
                  "`payload_too_large`) and images over 50 megapixels are refused (400 "
                  "`invalid_input`). Every image is re-encoded without its metadata (EXIF "
                  "with GPS, XMP, ICC, text); the EXIF orientation is applied first.")


def _upload_file() -> dict:
    created_headers = {"Location": {"description": "The file's URL, relative to this server.",
                                    "required": True,
                                    "schema": {"type": "string", "format": "uri-reference"}},
                       **RATE_HEADERS}
    body = {"type": "object", "required": ["file"], "properties": {
        # `format: binary` too: client generators read only it as "a file part".
        "file": {"type": "string", "format": "binary",
                 "contentMediaType": "application/octet-stream",
                 "description": "The image file (a file part, with a file name)."}}}
    return {
        "operationId": "uploadFile", "tags": ["Files"], "summary": "Upload a reference image",
        "description": "Stores an image for your own runs: pass its `url` in `image_urls`. "
                       "Only your account may use or read it (another account's file URL in "
                       "`image_urls` is 400 `invalid_input`). " + _UPLOAD_LIMITS,
        "requestBody": {"required": True,
                        "content": {"multipart/form-data": {"schema": body}}},
        "responses": _responses({"201": _answer("Stored", ref("File"), headers=created_headers)},
                                413, *_KEYED),
    }


def _get_file() -> dict:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "The last part of the file's `url` (random, with its extension)."}
    image = {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
    return {
        "operationId": "getFile", "tags": ["Files"], "summary": "Download an uploaded image",
        "description": "The file's bytes, for the account that uploaded it (its API keys, or "
                       "its signed-in browser); 404 for any other account, whether the file "
                       "exists or not. Not rate limited.",
        "parameters": [name],
        "responses": _responses({"200": {
            "description": "The image",
            "content": {"image/png": image, "image/jpeg": image, "image/webp": image}}},
            401, 403, 404, 503),
    }


def _paths(catalog: Catalog, env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "/files": {"post": _upload_file()},
        "/files/{name}": {"get": _get_file()},
        "/runs": {"post": _create_run(catalog, env), "get": _list_runs()},
        "/runs/{id}": {"get": _run_operation("getRun", "Get a run", "cancelRun")},
        "/runs/{id}/cancel": {"post": {
            **_run_operation("cancelRun", "Cancel a run", "getRun"),
            "description": "Ends a pending or processing run as failed (errorCode `canceled`) "
                           "and refunds it; a run that has already ended is returned as it is."}},
        "/account": {"get": {
            "operationId": "getAccount", "tags": ["Account"],
            "summary": "Balance and this key's spend",
            "responses": _responses({"200": _answer("The account", ref("Account"),
                                                    headers=RATE_HEADERS)}, *_KEYED)}},
        "/models": {"get": {
            "operationId": "listModels", "tags": ["Models"], "security": [],
            "summary": "The model catalog, available or not",
            "responses": _responses({"200": _answer("Models", ref("ModelList"))})}},
        "/models/{provider}/{name}": {"get": _get_model(catalog, env)},
    }


def _webhooks(absolute_urls: bool) -> dict:
    """The one webhook: `runEnded`, signed the Standard Webhooks way."""
    headers = [
        ("webhook-id", "The message id; the same on every retry, so handle each id once."),
        ("webhook-timestamp", "Unix seconds when this attempt was signed."),
        ("webhook-signature", "`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with "
                              "the account's webhook secret (Settings → Webhooks)."),
    ]
    return {"runEnded": {"post": {
        "operationId": "runEnded", "summary": "A run with a `webhook` has ended",
        "description": "POSTed to the run's `webhook` URL when it succeeds or fails. Any answer "
                       "other than 2xx is retried with backoff for up to 24 hours.",
        "security": [],
        "parameters": [{"name": name, "in": "header", "required": True, "description": text,
                        "schema": {"type": "string"}} for name, text in headers],
        "requestBody": {"required": True, "content": json_content(webhook_payload(absolute_urls))},
        "responses": {"2XX": {"description": "Received; not sent again."}},
    }}}


def _components(catalog: Catalog, env: Mapping[str, str]) -> dict:
    schemas = {
        "Run": RUN, "RunStatus": RUN_STATUS,
        "RunOutput": run_output("uri", "Absolute URLs of the files the run made."),
        "RunList": RUN_LIST, "Model": MODEL, "ModelList": MODEL_LIST, "Price": PRICE,
        "Account": ACCOUNT, "ApiKeyUsage": API_KEY_USAGE, "File": FILE, **error_schemas(),
    }
    schemas.update(request_schemas(catalog, env, reserved=schemas))
    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "bearerFormat": "sk-...",
                                       "description": "An API key: `Authorization: Bearer sk-...`."}},
        "headers": HEADERS,
        "responses": error_responses(),
        "schemas": schemas,
    }


_TAGS = [
    {"name": "Runs", "description": "Create, read, list and cancel runs."},
    {"name": "Account", "description": "The balance and the calling key's spend."},
    {"name": "Models", "description": "The catalog and each model's input schema; public."},
    {"name": "Files", "description": "Your own reference images, for `image_urls`."},
]


def build_document(catalog: Catalog, server_url: str, env: Mapping[str, str], *,
                   absolute_webhook_urls: bool = True) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for this server's API.

    `server_url` is the base the API is reached at ("" leaves `servers` relative);
    `absolute_webhook_urls` says whether webhook payloads carry absolute file URLs (only
    with RUNBASE_PUBLIC_URL set).
    """
    return {
        "openapi": "3.1.0",
        "info": {"title": "Runbase API", "version": "1.0.0",
                 "description": "Runbase-compatible runs API. Money is integer micro-USD. "
                                "Errors are `{\"error\": {\"message\", \"code\"}}` (see "
                                "`ErrorCode`). Rate limits: " + RATE_LIMIT_RULE},
        "servers": [{"url": absolute_url(server_url, "/api/v1")}],
        "security": [{"bearer": []}],
        "tags": _TAGS,
        "paths": _paths(catalog, env),
        "webhooks": _webhooks(absolute_webhook_urls),
        "components": _components(catalog, env),
    }


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI description of this API (public)."""
    config = current_app.config
    return jsonify(build_document(state.catalog(), public_base_url(), config["PROVIDER_ENV"],
                                  absolute_webhook_urls=bool(config.get("PUBLIC_URL"))))
