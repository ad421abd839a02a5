"""App-wide error pages: JSON envelope under /api/, HTML pages everywhere else.

Unknown routes never reach a blueprint, so the API's 404/405 envelope has to be
chosen here, by path.
"""
from __future__ import annotations

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .api.errors import http_error_response, internal_error_response


def _is_api() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error: HTTPException):
    if error.response is not None:
        # The raiser built the answer itself (e.g. the sign-in form re-rendered for a 429).
        return error.response
    if _is_api():
        return http_error_response(error)
    return render_template("errors/error.html", error=error), error.code


def _unexpected(error: Exception):
    if _is_api():
        return internal_error_response(error)
    from flask import current_app
    current_app.logger.exception("unhandled error on %s", request.path)
    wrapped = InternalServerError()
    return render_template("errors/error.html", error=wrapped), 500
