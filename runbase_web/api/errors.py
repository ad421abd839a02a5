"""The API's one error envelope: {"error": {"message": ..., "code": ...}}."""
from __future__ import annotations

import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

from ..errors import (InternalError, MethodNotAllowed, NotFound, PayloadTooLarge, RateLimited,
                      RunbaseError, ServiceUnavailable)
from ..extensions import OUTAGE_RETRY_AFTER, is_outage, rollback_quietly
from ..logs import current_request_id
from .blueprint import bp

log = logging.getLogger(__name__)
_HTTP_ERRORS = {404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge, 429: RateLimited}


def error_response(error: RunbaseError):
    """The JSON response for a refused request."""
    response = jsonify({"error": {"message": error.message, "code": error.code}})
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@bp.errorhandler(RunbaseError)
def handle_runbase_error(error: RunbaseError):
    """Refusals raised by services: roll back whatever the request had started."""
    rollback_quietly()
    return error_response(error)


def http_error_response(error: HTTPException):
    """Unknown routes, wrong methods, oversized bodies under /api/v1, in the envelope."""
    kind = _HTTP_ERRORS.get(error.code)
    if kind is None:
        return error_response(RunbaseError(error.description or "Bad request"))
    messages = {404: "No such API endpoint.", 405: "This endpoint does not accept that method.",
                413: "The request body is too large.", 429: "Rate limit exceeded"}
    response = error_response(kind(messages[error.code]))
    # Keep what the HTTP error says besides its body, e.g. `Allow` on a 405 (RFC 9110).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def internal_error_response(error: Exception):
    """A bug, or the database out of reach: log it with a request id the client can quote;
    never show the trace. An outage is a 503 with Retry-After, so clients wait and retry."""
    request_id = current_request_id()  # the one echoed in X-Request-Id and the logs
    rollback_quietly()
    if is_outage(error):
        log.warning("request %s: database unavailable: %s", request_id, error.__class__.__name__)
        unavailable = ServiceUnavailable(
            "The service is briefly unavailable; nothing was charged unless the run was "
            f"created. Retry shortly (request id {request_id}).")
        unavailable.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
        return error_response(unavailable)
    log.error("request %s failed", request_id, exc_info=error)
    return error_response(InternalError(f"Something went wrong on our side (request id {request_id})."))
