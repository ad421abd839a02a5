"""Errors that services raise and views turn into responses.

Each carries the public `code` and HTTP status of the Runbase API, so the API, the
Playground and the CLI all say the same thing about the same problem.
"""
from __future__ import annotations


class RunbaseError(Exception):
    """A request Runbase refuses, with its public error code and HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        #: The input field at fault, for forms that show errors next to fields.
        self.field = field
        #: HTTP headers the answer must carry (e.g. Retry-After on a 429 or 503).
        self.headers: dict[str, str] = {}


def _error(name: str, status: int, code: str) -> type[RunbaseError]:
    return type(name, (RunbaseError,), {"status": status, "code": code,
                                        "__doc__": f"API error `{code}` ({status})."})


InvalidJson = _error("InvalidJson", 400, "invalid_json")
MissingModel = _error("MissingModel", 400, "missing_model")
MissingInput = _error("MissingInput", 400, "missing_input")
InvalidQuery = _error("InvalidQuery", 400, "invalid_query")
InvalidInput = _error("InvalidInput", 400, "invalid_input")
ModelNotFound = _error("ModelNotFound", 400, "model_not_found")
HostNotAllowed = _error("HostNotAllowed", 400, "host_not_allowed")
MissingApiKey = _error("MissingApiKey", 401, "missing_api_key")
InvalidApiKey = _error("InvalidApiKey", 401, "invalid_api_key")
InsufficientBalance = _error("InsufficientBalance", 402, "insufficient_balance")
SpendLimitExceeded = _error("SpendLimitExceeded", 403, "api_key_spend_limit_exceeded")
IpNotAllowed = _error("IpNotAllowed", 403, "ip_not_allowed")
RunNotFound = _error("RunNotFound", 404, "run_not_found")
NotFound = _error("NotFound", 404, "not_found")
MethodNotAllowed = _error("MethodNotAllowed", 405, "method_not_allowed")
PayloadTooLarge = _error("PayloadTooLarge", 413, "payload_too_large")
RateLimited = _error("RateLimited", 429, "RATE_LIMITED")
InternalError = _error("InternalError", 500, "internal_error")
ServiceUnavailable = _error("ServiceUnavailable", 503, "service_unavailable")
