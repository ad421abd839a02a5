"""Keep the web pages' per-request hooks off the API's requests.

Flask-Login refreshes its remember-me cookie and Flask-Limiter injects its headers and
resets its state after every request of the app. The API never uses either (keys, not
cookies; its own per-key limiter), yet paid for both on each call, a fifth of a cached
GET's CPU with the other hooks; and touching the session added `Vary: Cookie` to
answers that ignore cookies.
"""
from __future__ import annotations

from typing import Callable

from flask import Flask, request

API_BLUEPRINT = "api"


def skip_on_api(app: Flask, stage: str, matches: Callable[[Callable], bool]) -> None:
    """Replace each app-wide hook of `stage` ("after" or "teardown") for which
    `matches(hook)` holds with one that does nothing for requests routed to the API
    blueprint."""
    registry = {"after": app.after_request_funcs,
                "teardown": app.teardown_request_funcs}[stage].get(None, [])
    wrap = _after_off_api if stage == "after" else _teardown_off_api
    registry[:] = [wrap(hook) if matches(hook) else hook for hook in registry]


def is_hook(target: Callable) -> Callable[[Callable], bool]:
    """A matcher for skip_on_api: the hook `target`, bound or wrapped in a partial."""
    return lambda hook: hook == target or getattr(hook, "func", None) == target


def _after_off_api(hook: Callable) -> Callable:
    def after(response):
        return response if request.blueprint == API_BLUEPRINT else hook(response)
    return after


def _teardown_off_api(hook: Callable) -> Callable:
    def teardown(error):
        if request.blueprint != API_BLUEPRINT:
            hook(error)
    return teardown
