"""Flask's signed-cookie session, without the per-request work an API call doesn't need."""
from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers import Request


class CookieSessionInterface(SecureCookieSessionInterface):
    """The same cookies, signatures and expiry as Flask's own interface, with two savings
    on every request: a request without the cookie (every API call) gets its empty session
    before any signer is built, and the signer is built once per set of secret keys
    instead of once per request."""

    _signer: tuple[tuple, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer for the app's current key and fallbacks, reused while they
        stay the same (a key rotated in app.config takes effect on the next request)."""
        secrets = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = self._signer
        if cached is None or cached[0] != secrets:
            cached = self._signer = (secrets, super().get_signing_serializer(app))
        return cached[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The session in the request's cookie; an empty one when there is no cookie."""
        # No Cookie header at all (every API call) is decided without parsing cookies:
        # a missing key in Werkzeug's cookie dict costs a raised and caught KeyError.
        if app.secret_key and (not request.environ.get("HTTP_COOKIE")
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)
