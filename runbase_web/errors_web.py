"""App-wide error pages: JSON envelope under /api/, HTML pages everywhere else.

Unknown routes never reach a blueprint, so the API's 404/405 envelope has to be
chosen here, by path.
"""
from __future__ import annotations

from flask import Flask, current_app, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, ServiceUnavailable

from .api.errors import handle_runbase_error, http_error_response, internal_error_response
from .errors import RunbaseError, RunNotFound
from .extensions import OUTAGE_RETRY_AFTER, is_outage, rollback_quietly


def _is_api() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, _http_error)
    # Pages call services.runs.get_run directly: another account's run is the same 404
    # page as a missing one. (The API blueprint's own handler answers with the envelope.)
    app.register_error_handler(RunNotFound, _run_not_found)
    app.register_error_handler(RunbaseError, _refused)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error: HTTPException):
    if error.response is not None:
        # The raiser built the answer itself (e.g. the sign-in form re-rendered for a 429).
        return error.response
    if _is_api():
        return http_error_response(error)
    return render_template("errors/error.html", error=error), error.code


def _run_not_found(error: RunNotFound):
    return _http_error(NotFound(description="There is no run with this id in your account."))


def _refused(error: RunbaseError):
    """An API refusal raised before any blueprint matched (a check every request passes,
    such as the Host or query checks) answers in the envelope like any other. Pages handle
    their own refusals: one that gets here is a bug."""
    if _is_api():
        return handle_runbase_error(error)
    return _unexpected(error)


def _unexpected(error: Exception):
    if _is_api():
        return internal_error_response(error)
    rollback_quietly()
    if is_outage(error):
        current_app.logger.warning("database unavailable on %s: %s", request.path,
                                   error.__class__.__name__)
        page = ServiceUnavailable(description="The service is briefly unavailable. "
                                              "Please try again in a moment.")
        return (render_template("errors/error.html", error=page), 503,
                {"Retry-After": str(OUTAGE_RETRY_AFTER)})
    current_app.logger.exception("unhandled error on %s", request.path)
    wrapped = InternalServerError()
    return render_template("errors/error.html", error=wrapped), 500
