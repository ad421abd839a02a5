"""GET /api/v1/openapi.json: OpenAPI 3.1, built from the catalog schemas the API validates with."""
from __future__ import annotations

from typing import Any, Mapping

from flask import current_app, jsonify

from .. import state
from ..catalog import Catalog
from ..urls import absolute_url, public_base_url
from .blueprint import bp

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "code"],
    "properties": {"message": {"type": "string"}, "code": {"type": "string"}}}}}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_RUN = {"type": "object",
        "required": ["id", "model", "status", "costUsd", "input", "output", "error", "errorCode",
                     "createdAt", "startedAt", "completedAt"],
        "properties": {
            "id": {"type": "string", "pattern": "^run_"}, "model": {"type": "string"},
            "status": {"enum": ["pending", "processing", "succeeded", "failed"]},
            "costUsd": {"type": "integer", "minimum": 0, "description": "micro-USD"},
            "input": {"type": "object"},
            "output": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["urls"], "properties": {
                "urls": {"type": "array", "items": {"type": "string", "format": "uri"}}}}]},
            "error": {"type": ["string", "null"]}, "errorCode": {"type": ["string", "null"]},
            "createdAt": {"type": "string", "format": "date-time"}, "startedAt": _TIME, "completedAt": _TIME}}
_MODEL = {"type": "object", "required": ["id", "name", "provider", "kind", "available", "inputSchema", "price"],
          "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                         "provider": {"type": "string"}, "kind": {"enum": ["image", "video"]},
                         "description": {"type": "string"}, "available": {"type": "boolean"},
                         "unavailableReason": {"type": ["string", "null"]},
                         "inputSchema": {"type": "object"}, "price": {"type": "object"}}}
_ACCOUNT = {"type": "object", "required": ["email", "balanceUsd", "apiKey"], "properties": {
    "email": {"type": "string"}, "balanceUsd": {"type": "integer"},
    "apiKey": {"type": "object", "properties": {
        "name": {"type": "string"}, "prefix": {"type": "string"}, "spentUsd": {"type": "integer"},
        "spendLimitUsd": {"type": ["integer", "null"]}, "remainingUsd": {"type": ["integer", "null"]}}}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RATE_LIMIT_RULE = (
    "Each API key may make N requests per M seconds on the runs and account endpoints "
    "(the operator's RUNBASE_RATE_LIMIT, default 20 per 10 s; create, get, list and cancel are "
    "counted together). The window moves: any span of M seconds holds at most N accepted "
    "requests. A refused request is not counted; waiting Retry-After seconds always lets the "
    "next one in.")
_SECONDS_HEADER = {"schema": {"type": "integer", "minimum": 1}}
_RATE_HEADERS = {
    "X-RateLimit-Limit": {"description": "N, the requests allowed per window",
                          "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "requests left in the current window",
                              "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Unix time at which the oldest counted request "
                                         "leaves the window", "schema": {"type": "integer"}},
}
_RESPONSES = {
    "429": {"description": "Rate limited (code RATE_LIMITED). " + RATE_LIMIT_RULE,
            "headers": {"Retry-After": {"description": "whole seconds to wait, rounded up",
                                        **_SECONDS_HEADER}, **_RATE_HEADERS},
            "content": {"application/json": {"schema": _ref("Error")}}},
    "503": {"description": "The database is unreachable for a moment (code "
                           "service_unavailable); nothing was charged. Retry after Retry-After.",
            "headers": {"Retry-After": {"description": "seconds to wait", **_SECONDS_HEADER}},
            "content": {"application/json": {"schema": _ref("Error")}}},
}


def _errors(*statuses: int) -> dict:
    return {str(status): {"$ref": f"#/components/responses/{status}"} if str(status) in _RESPONSES
            else _json(_ref("Error"), "Error") for status in statuses}


#: What jsontext refuses in any input string, said in the schema so clients know it.
NO_NUL = "^[^\\u0000]*$"


def _without_nul(schema: Any) -> Any:
    """A copy of an input schema in which every free-text string also says it holds no NUL
    character (the server refuses NUL anywhere in an input: PostgreSQL cannot store it)."""
    if isinstance(schema, list):
        return [_without_nul(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied = {key: _without_nul(value) for key, value in schema.items()}
    if copied.get("type") == "string" and "enum" not in copied and "pattern" not in copied:
        copied["pattern"] = NO_NUL
    return copied


def _create_body(catalog: Catalog, env: Mapping[str, str]) -> dict:
    """One alternative per model this server can run: its id as a constant and its input schema."""
    variants = [{"type": "object", "required": ["model", "input"], "properties": {
        "model": {"const": spec.id}, "input": _without_nul(spec.input_schema)}}
        for spec in catalog.all() if spec.is_available(env)]
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": variants}}}}


def _paths(catalog: Catalog, env: Mapping[str, str]) -> dict[str, Any]:
    run_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/runs": {
            "post": {"operationId": "createRun", "summary": "Create a run", "requestBody": _create_body(catalog, env),
                     "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                     "schema": {"type": "string", "maxLength": 255}}],
                     "responses": {"201": _json(_ref("Run"), "Created"),
                                   **_errors(400, 401, 402, 403, 413, 422, 429, 503)}},
            "get": {"operationId": "listRuns", "summary": "List runs, newest first", "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": {"enum": ["pending", "processing", "succeeded", "failed"]}},
                {"name": "model", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "required": ["data", "hasMore", "nextCursor"],
                                            "properties": {"data": {"type": "array", "items": _ref("Run")},
                                                           "hasMore": {"type": "boolean"},
                                                           "nextCursor": {"type": ["string", "null"]}}}, "A page"),
                              **_errors(400, 401, 403, 404, 429, 503)}}},
        "/runs/{id}": {"get": {"operationId": "getRun", "summary": "Get a run", "parameters": run_id,
                               "responses": {"200": _json(_ref("Run"), "The run"), **_errors(401, 403, 404, 429, 503)}}},
        "/runs/{id}/cancel": {"post": {"operationId": "cancelRun", "summary": "Cancel a run", "parameters": run_id,
                                       "responses": {"200": _json(_ref("Run"), "The run"), **_errors(401, 403, 404, 429, 503)}}},
        "/account": {"get": {"operationId": "getAccount", "summary": "Balance and this key's spend",
                             "responses": {"200": _json(_ref("Account"), "The account"), **_errors(401, 403, 429, 503)}}},
        "/models": {"get": {"operationId": "listModels", "security": [], "summary": "The model catalog",
                            "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                                "data": {"type": "array", "items": _ref("Model")}}}, "Models")}}},
        "/models/{provider}/{name}": {"get": {
            "operationId": "getModel", "security": [], "summary": "One model",
            "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                           for n in ("provider", "name")],
            "responses": {"200": _json(_ref("Model"), "The model"), **_errors(404)}}},
    }


def build_document(catalog: Catalog, server_url: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for this server's API and its configured providers."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Runbase API", "version": "1.0.0",
                 "description": "Runbase-compatible runs API. Money is integer micro-USD. "
                                "Rate limits: " + RATE_LIMIT_RULE},
        "servers": [{"url": absolute_url(server_url, "/api/v1")}],
        "security": [{"bearer": []}],
        "paths": _paths(catalog, env),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "sk-..."}},
            "responses": _RESPONSES,
            "schemas": {"Run": _RUN, "Error": _ERROR, "Model": _MODEL, "Account": _ACCOUNT}},
    }


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI description of this API (public)."""
    return jsonify(build_document(state.catalog(), public_base_url(),
                                  current_app.config["PROVIDER_ENV"]))
