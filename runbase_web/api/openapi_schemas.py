"""The OpenAPI document's fixed parts: the objects the API answers with, its error
envelope and codes, its headers and its shared error responses.

Every field the server always sends is `required` (nullable where it may be null), and
every free-form object says `additionalProperties: true`: generators read a bare
`{"type": "object"}` as an object with no properties (openapi-typescript makes it
`Record<string, never>`).
"""
from __future__ import annotations

from ..presenters.api_errors import ERROR_CAUSES, codes_by_status, error_rows

RATE_LIMIT_RULE = (
    "Each API key may make N requests per M seconds on the runs and account endpoints "
    "(the operator's RUNBASE_RATE_LIMIT, default 20 per 10 s; create, get, list and cancel are "
    "counted together). The window moves: any span of M seconds holds at most N accepted "
    "requests. A refused request is not counted; waiting Retry-After seconds always lets the "
    "next one in.")

RUN_STATUSES = ["pending", "processing", "succeeded", "failed"]


def ref(name: str, kind: str = "schemas") -> dict:
    """A reference to a component."""
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: dict, **extra) -> dict:
    """An application/json media type holding `schema`."""
    return {"application/json": {"schema": schema, **extra}}


_TIME = {"type": ["string", "null"], "format": "date-time"}
_OBJECT = {"type": "object", "additionalProperties": True}

RUN = {
    "type": "object",
    "description": "A run: one generation, charged when created and refunded if it fails.",
    "required": ["id", "model", "status", "costUsd", "input", "output", "error", "errorCode",
                 "createdAt", "startedAt", "completedAt"],
    "properties": {
        "id": {"type": "string", "pattern": "^run_"},
        "model": {"type": "string", "description": "The model's `provider/name` id."},
        "status": ref("RunStatus"),
        "costUsd": {"type": "integer", "minimum": 0,
                    "description": "What the run costs, in micro-USD (1000 = $0.001)."},
        "input": {**_OBJECT, "description": "The input as validated: defaults filled in and, "
                                             "for models that take a seed, the seed used."},
        "output": {"oneOf": [{"type": "null"}, ref("RunOutput")],
                   "description": "The files made, once the run has succeeded; else null."},
        "error": {"type": ["string", "null"], "description": "Why a failed run failed."},
        "errorCode": {"type": ["string", "null"],
                      "description": "A failed run's code, e.g. `canceled`, `timeout`, "
                                     "`provider_error`, `content_rejected`."},
        "createdAt": {"type": "string", "format": "date-time"},
        "startedAt": _TIME, "completedAt": _TIME,
    },
}
RUN_STATUS = {"type": "string", "enum": RUN_STATUSES,
              "description": "`pending` → `processing` → `succeeded` or `failed`."}


def run_output(url_format: str, description: str) -> dict:
    """A succeeded run's files; `url_format` is uri (absolute) or uri-reference."""
    return {"type": "object", "required": ["urls"], "properties": {"urls": {
        "type": "array", "description": description,
        "items": {"type": "string", "format": url_format}}}}


RUN_LIST = {
    "type": "object", "required": ["data", "hasMore", "nextCursor"],
    "properties": {
        "data": {"type": "array", "items": ref("Run")},
        "hasMore": {"type": "boolean"},
        "nextCursor": {"type": ["string", "null"],
                       "description": "Pass as `after` for the next page; null on the last."},
    },
}
PRICE = {
    "type": "object",
    "description": "How a run is priced, in micro-USD: a flat `micros`, or `tiers` keyed by "
                   "the value of the input field `tier`; with `per`, times the value of that "
                   "numeric input field (e.g. `num_images`, `duration`).",
    "properties": {
        "micros": {"type": "integer", "minimum": 0},
        "tier": {"type": "string", "description": "The input field that picks the tier."},
        "tiers": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "per": {"type": "string", "description": "The input field the price is multiplied by."},
    },
}
MODEL = {
    "type": "object",
    "required": ["id", "name", "provider", "kind", "description", "available",
                 "unavailableReason", "inputSchema", "price"],
    "properties": {
        "id": {"type": "string", "description": "`provider/name`, what `createRun` takes."},
        "name": {"type": "string", "description": "A display name."},
        "provider": {"type": "string"},
        "kind": {"type": "string", "enum": ["image", "video"]},
        "description": {"type": "string"},
        "available": {"type": "boolean",
                      "description": "Whether this server can run it now."},
        "unavailableReason": {"type": ["string", "null"],
                              "description": "What the operator must set; null when available."},
        "inputSchema": {**_OBJECT, "description": "The JSON Schema (draft 2020-12) that `input` "
                                                  "must match."},
        "price": ref("Price"),
    },
}
MODEL_LIST = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "array", "items": ref("Model")}}}
ACCOUNT = {
    "type": "object", "required": ["email", "balanceUsd", "apiKey"],
    "properties": {
        "email": {"type": "string"},
        "balanceUsd": {"type": "integer", "description": "The balance, in micro-USD."},
        "apiKey": ref("ApiKeyUsage"),
    },
}
API_KEY_USAGE = {
    "type": "object", "description": "The key this request was made with.",
    "required": ["name", "prefix", "spentUsd", "spendLimitUsd", "remainingUsd"],
    "properties": {
        "name": {"type": "string"}, "prefix": {"type": "string"},
        "spentUsd": {"type": "integer", "description": "Spent with this key, micro-USD."},
        "spendLimitUsd": {"type": ["integer", "null"],
                          "description": "The key's lifetime limit, micro-USD; null: none."},
        "remainingUsd": {"type": ["integer", "null"],
                         "description": "What the key may still spend; null: no limit."},
    },
}


FILE = {
    "type": "object", "required": ["id", "url", "contentType", "size"],
    "description": "An uploaded reference image, private to its account.",
    "properties": {
        "id": {"type": "string", "description": "`file_...`."},
        "url": {"type": "string", "format": "uri",
                "description": "Where the file is read, and what to pass in `image_urls`: "
                               "absolute (on RUNBASE_PUBLIC_URL when the server has one)."},
        "contentType": {"type": "string", "enum": ["image/png", "image/jpeg", "image/webp"]},
        "size": {"type": "integer", "minimum": 1, "description": "Bytes, as stored."},
    },
}


def error_schemas() -> dict[str, dict]:
    """Error (the envelope), ErrorDetail and ErrorCode, the codes from the error classes."""
    codes = [row.code for row in error_rows()]
    described = "\n".join(f"- `{row.code}` ({row.status}): {ERROR_CAUSES.get(row.code, '')}"
                          for row in error_rows())
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": ref("ErrorDetail")},
                  "description": "Every refusal and failure answers with this envelope."},
        "ErrorDetail": {"type": "object", "required": ["message", "code"], "properties": {
            "message": {"type": "string", "description": "For people; wording may change."},
            "code": {"anyOf": [ref("ErrorCode"), {"type": "string"}],
                     "description": "Stable: match on it. One of `ErrorCode`; a later server "
                                    "may add codes, so treat an unknown one by its HTTP status."},
        }},
        "ErrorCode": {
            "type": "string", "enum": codes,
            "description": "The codes this server answers with. All are lower snake case "
                           "except `RATE_LIMITED`, spelled so by the hosted Runbase service "
                           "and kept for compatibility: match codes exactly.\n\n" + described,
        },
    }


HEADERS = {
    "Location": {"description": "The new run's URL, relative to this server.", "required": True,
                 "schema": {"type": "string", "format": "uri-reference"}},
    "Idempotent-Replayed": {
        "description": "`true` when an earlier request with the same Idempotency-Key and body "
                       "created this run and nothing new was charged; absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]}},
    "Retry-After": {"description": "Whole seconds to wait before retrying, rounded up.",
                    "required": True, "schema": {"type": "integer", "minimum": 1}},
    "X-RateLimit-Limit": {"description": "N, the requests the key may make per window. Sent "
                                         "on requests counted against a key's rate limit.",
                          "schema": {"type": "integer", "minimum": 1}},
    "X-RateLimit-Remaining": {"description": "Requests left in the current window.",
                              "schema": {"type": "integer", "minimum": 0}},
    "X-RateLimit-Reset": {"description": "Unix time at which the oldest counted request "
                                         "leaves the window.", "schema": {"type": "integer"}},
}
RATE_HEADERS = {name: ref(name, "headers") for name in
                ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")}

#: The shared error responses: component name → (status, what it means).
ERROR_RESPONSES = {
    "BadRequest": (400, "The request is malformed"),
    "Unauthorized": (401, "No usable API key"),
    "PaymentRequired": (402, "The balance does not cover the run"),
    "Forbidden": (403, "The key may not do this"),
    "NotFound": (404, "No such thing"),
    "PayloadTooLarge": (413, "The body is too large"),
    "UnprocessableContent": (422, "The request contradicts an earlier one"),
    "RateLimited": (429, "Rate limited. " + RATE_LIMIT_RULE),
    "ServiceUnavailable": (503, "The database is unreachable for a moment; nothing was "
                                "charged unless the run was created. Retry after "
                                "Retry-After, with the same Idempotency-Key"),
}
#: What `default` stands for: statuses any operation may answer without listing them.
DEFAULT_STATUSES = (405, 500)


def _codes(statuses) -> str:
    grouped = codes_by_status()
    return ", ".join(f"`{code}` ({status})" for status in statuses for code in grouped.get(status, []))


def error_responses() -> dict[str, dict]:
    """components.responses: one per status, listing its codes, and `UnexpectedError`."""
    responses = {}
    for name, (status, meaning) in ERROR_RESPONSES.items():
        headers = dict(RATE_HEADERS)
        if status in (429, 503):
            headers["Retry-After"] = ref("Retry-After", "headers")
        responses[name] = {"description": f"{meaning}. Codes: {_codes([status])}.",
                           "headers": headers, "content": json_content(ref("Error"))}
    responses["UnexpectedError"] = {
        "description": "Any other refusal or failure, in the same envelope: "
                       f"{_codes(DEFAULT_STATUSES)}. A 405 carries `Allow`; a 500's message "
                       "carries a request id to quote.",
        "headers": dict(RATE_HEADERS), "content": json_content(ref("Error"))}
    return responses


def status_response(status: int) -> dict:
    """The shared response for an error status."""
    name = next(name for name, (code, _) in ERROR_RESPONSES.items() if code == status)
    return ref(name, "responses")


def webhook_payload(absolute_urls: bool) -> dict:
    """What the `runEnded` webhook POSTs: the run object. Its output URLs are absolute on
    RUNBASE_PUBLIC_URL; a server without it has no host to put in them outside a request."""
    if absolute_urls:
        return ref("Run")
    payload = {**RUN, "properties": {**RUN["properties"], "output": {
        "oneOf": [{"type": "null"}, run_output(
            "uri-reference", "Site paths such as `/files/...`: this server has no "
                             "RUNBASE_PUBLIC_URL, so resolve them against the URL you "
                             "call the API at.")]}}}
    payload["description"] = ("The run object as `getRun` answers it, except that output URLs "
                              "are site paths: this server has no RUNBASE_PUBLIC_URL.")
    return payload

