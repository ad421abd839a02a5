"""The API's error reference: every code it answers with, its HTTP status and when it
happens. Generated from the error classes, so the docs page (/docs/errors) and the OpenAPI
document (the `ErrorCode` enum, each status's list of codes) say exactly what the code can
answer."""
from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

from .. import errors
from ..errors import RunbaseError
from ..services import idempotency

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
    "invalid_query": "A query parameter has a value it cannot take (`limit`, `after`, "
                     "`status` or `model` of `GET /api/v1/runs`; an empty `status` too), or "
                     "any query value holds a NUL character.",
    "invalid_input": "`input` does not match the model's schema (the message names the field "
                     "and the rule it broke), holds a NUL character, or `webhook` is not an "
                     "absolute http(s) URL without spaces or control characters.",
    "model_not_found": "No model with this id on this server; the message says when it exists "
                       "but its provider is not configured here.",
    "invalid_idempotency_key": "The `Idempotency-Key` header is empty, only spaces, or "
                               "longer than 255 characters (counted as characters of its "
                               "UTF-8 text, not bytes).",
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
    "host_not_allowed": "The request's `Host` is not one this server answers to "
                        "(`RUNBASE_ALLOWED_HOSTS`, or the host of `RUNBASE_PUBLIC_URL`).",
    "payload_too_large": "The request body is larger than the server accepts.",
    "idempotency_key_reused": "The `Idempotency-Key` was already used within 24 h with a "
                              "different request body.",
    "RATE_LIMITED": "More requests than the per-key limit allows (see Rate limits); wait for "
                    "the `Retry-After` seconds. The only upper-case code: the hosted Runbase "
                    "service spells it so, and clients match it exactly.",
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


def codes_by_status() -> dict[int, list[str]]:
    """{HTTP status: the codes answered with it}, in the reference's order."""
    grouped: dict[int, list[str]] = {}
    for row in error_rows():
        grouped.setdefault(row.status, []).append(row.code)
    return grouped
