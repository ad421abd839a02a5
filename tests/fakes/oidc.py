"""A fake OpenID Connect provider (Google-like) for "Continue with Google".

Speaks the authorization-code flow the way Google does
(https://developers.google.com/identity/openid-connect/openid-connect):
  GET  /.well-known/openid-configuration   discovery document
  GET  /authorize    checks client_id, redirect_uri, response_type, scope, then redirects
                     back to redirect_uri with ?code=...&state=... (no login screen)
  POST /token        client_secret_basic/post auth, code + redirect_uri + PKCE verifier;
                     answers an access token and an RS256 ID token carrying the nonce
  GET  /jwks         the public signing key

Knobs (`state.data`), read when /authorize is called:
  sub, email, email_verified, name   claims of the person who "signs in"
  nonce            put this nonce in the ID token instead of the one requested
  sign_with_other_key  sign the ID token with a key that is not in the JWKS (same kid)
  audience         put this `aud` in the ID token instead of the client id
"""
from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import time
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fakes.server import FakeServer, FakeState

CLIENT_ID = "runbase-test.apps.googleusercontent.com"
CLIENT_SECRET = "fake-google-secret"
KEY_ID = "fake-key-1"


def _error(status: int, error: str, description: str = ""):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def _client_credentials() -> tuple[str | None, str | None]:
    if request.authorization and request.authorization.type == "basic":
        return request.authorization.username, request.authorization.password
    return request.form.get("client_id"), request.form.get("client_secret")


def _pkce_ok(challenge: str | None, method: str | None, verifier: str | None) -> bool:
    if not challenge:
        return True
    if not verifier:
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
    return verifier == challenge


def make_app(state: FakeState, signing_key: RSAKey, other_key: RSAKey) -> Flask:
    """The fake provider; its issuer is whatever host it is reached on."""
    app = Flask("fake_oidc")

    def issuer() -> str:
        return request.host_url.rstrip("/")

    @app.get("/.well-known/openid-configuration")
    def discovery():
        state.record()
        base = issuer()
        return jsonify({
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
        })

    @app.get("/jwks")
    def jwks():
        state.record()
        return jsonify({"keys": [signing_key.as_dict(private=False, kid=KEY_ID, use="sig",
                                                     alg="RS256")]})

    @app.get("/authorize")
    def authorize():
        call = state.record()
        args = call.args
        if args.get("client_id") != CLIENT_ID:
            return _error(400, "invalid_client", "unknown client_id")
        if args.get("response_type") != "code" or "openid" not in args.get("scope", "").split():
            return _error(400, "invalid_request", "response_type=code and scope openid needed")
        if not args.get("redirect_uri") or not args.get("state"):
            return _error(400, "invalid_request", "redirect_uri and state are required")
        code = secrets.token_urlsafe(24)
        with state.lock:
            state.data.setdefault("codes", {})[code] = {
                "redirect_uri": args["redirect_uri"], "nonce": args.get("nonce"),
                "code_challenge": args.get("code_challenge"),
                "code_challenge_method": args.get("code_challenge_method"),
                "person": {name: state.data[name] for name in
                           ("sub", "email", "email_verified", "name") if name in state.data},
                "knobs": {name: state.data[name] for name in
                          ("nonce", "sign_with_other_key", "audience") if name in state.data},
            }
        query = urlencode({"code": code, "state": args["state"]})
        return redirect(f"{args['redirect_uri']}?{query}")

    @app.post("/token")
    def token():
        call = state.record()
        client_id, client_secret = _client_credentials()
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            return _error(401, "invalid_client")
        form = {key: values[0] for key, values in call.form.items()}
        with state.lock:
            grant = state.data.get("codes", {}).pop(form.get("code"), None)  # codes are single-use
        if (form.get("grant_type") != "authorization_code" or grant is None
                or form.get("redirect_uri") != grant["redirect_uri"]):
            return _error(400, "invalid_grant")
        if not _pkce_ok(grant["code_challenge"], grant["code_challenge_method"],
                        form.get("code_verifier")):
            return _error(400, "invalid_grant", "code_verifier does not match")
        knobs = grant["knobs"]
        now = int(time.time())
        claims = {"iss": issuer(), "aud": knobs.get("audience", CLIENT_ID), "azp": CLIENT_ID,
                  "iat": now, "exp": now + 3600, **grant["person"]}
        nonce = knobs.get("nonce", grant["nonce"])
        if nonce is not None:
            claims["nonce"] = nonce
        key = other_key if knobs.get("sign_with_other_key") else signing_key
        id_token = jwt.encode({"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}, claims, key)
        return jsonify({"access_token": secrets.token_urlsafe(32), "token_type": "Bearer",
                        "expires_in": 3599, "scope": "openid email profile",
                        "id_token": id_token})

    return app


@functools.cache
def _keys() -> tuple[RSAKey, RSAKey]:
    """Two fresh RSA keys, made once per test process (generating them is slow)."""
    return RSAKey.generate_key(2048), RSAKey.generate_key(2048)


class FakeOIDC:
    """The fake provider served on 127.0.0.1, with a fresh RSA key per instance."""

    def __init__(self):
        self.state = FakeState()
        self.state.data.update({"sub": "google-sub-1", "email": "person@gmail.com",
                                "email_verified": True, "name": "Pat Person"})
        self.signing_key, self.other_key = _keys()
        self.server = FakeServer(make_app(self.state, self.signing_key, self.other_key))

    @property
    def url(self) -> str:
        """Base URL (the issuer)."""
        return self.server.url

    @property
    def discovery_url(self) -> str:
        """What GOOGLE_DISCOVERY_URL points at."""
        return f"{self.url}/.well-known/openid-configuration"

    def start(self) -> "FakeOIDC":
        """Start serving."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()
