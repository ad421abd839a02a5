"""Continue with Google: OpenID Connect authorization-code flow through Authlib.

Offered only when GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are set. The provider is
configured from its discovery document (GOOGLE_DISCOVERY_URL). Authlib keeps `state`,
`nonce` and the PKCE verifier in the signed session cookie and checks them on the way
back; the ID token's signature is verified against the provider's JWKS, and its issuer,
audience, expiry and nonce are validated, before any claim is trusted.

The redirect URI to register with Google is `<RUNBASE_PUBLIC_URL>/auth/google/callback`.
"""
from __future__ import annotations

import logging

import requests
from flask import abort, current_app, flash, redirect, request, session, url_for
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..services import accounts
from ..money import format_usd
from ..urls import absolute_url, public_base_url
from .blueprint import bp
from .redirects import safe_next
from .session import start_session

log = logging.getLogger(__name__)

SCOPE = "openid email profile"
#: Seconds to wait for Google's discovery document, JWKS and token endpoint.
TIMEOUT_SECONDS = 10
_CLIENT_KEY = "runbase.google_oauth"
_NEXT_KEY = "google_next"

FAILED = "Google sign-in didn't complete. Please try again."
UNAVAILABLE = "Google sign-in is unavailable right now. Please try again in a moment."


def is_configured(app=None) -> bool:
    """Whether Google sign-in is offered: both client settings are set."""
    config = (app or current_app).config
    return bool(config.get("GOOGLE_CLIENT_ID") and config.get("GOOGLE_CLIENT_SECRET"))


def _client():
    """This app's Authlib client for Google, created on first use (metadata loads lazily)."""
    app = current_app._get_current_object()
    client = app.extensions.get(_CLIENT_KEY)
    if client is None:
        # Imported on first use: Authlib and its JOSE stack cost ~70 ms at every start,
        # also on servers where Google sign-in is off.
        from authlib.integrations.flask_client import OAuth

        client = OAuth(app).register(
            "google",
            client_id=app.config["GOOGLE_CLIENT_ID"],
            client_secret=app.config["GOOGLE_CLIENT_SECRET"],
            server_metadata_url=app.config["GOOGLE_DISCOVERY_URL"],
            client_kwargs={"scope": SCOPE, "code_challenge_method": "S256",
                           "default_timeout": TIMEOUT_SECONDS})
        app.extensions[_CLIENT_KEY] = client
    return client


def _callback_url() -> str:
    """Where Google sends people back: on RUNBASE_PUBLIC_URL when set (behind a proxy the
    request's own host may be an internal one)."""
    return absolute_url(public_base_url(), url_for("auth.google_callback"))


def _id_token_checks(client) -> dict:
    """Claims the ID token must carry: this provider as issuer and this app as audience
    (Authlib checks `aud` only through `azp` unless told; OIDC Core 3.1.3.7 requires it)."""
    issuer = client.load_server_metadata()["issuer"]
    issuers = [issuer]
    if issuer == "https://accounts.google.com":
        issuers.append("accounts.google.com")  # Google documents both forms
    return {"iss": {"essential": True, "values": issuers},
            "aud": {"essential": True, "value": client.client_id}}


def _refuse(message: str, next_target: str | None):
    flash(message, "error")
    return redirect(url_for("auth.login", next=next_target))


@bp.get("/google")
def google_start():
    """Send the visitor to Google, remembering the (safe) page to come back to."""
    if not is_configured():
        abort(404)
    next_target = safe_next(request.args.get("next"))
    session[_NEXT_KEY] = next_target
    try:
        return _client().authorize_redirect(_callback_url())
    except (requests.RequestException, ValueError, KeyError) as error:
        log.warning("Google discovery failed: %s", error)
        return _refuse(UNAVAILABLE, next_target)


@bp.get("/google/callback")
def google_callback():
    """Finish the flow: verify what Google sent, then sign in, link or create the account."""
    if not is_configured():
        abort(404)
    next_target = safe_next(session.pop(_NEXT_KEY, None))
    from authlib.integrations.base_client import OAuthError  # lazily, as in _client
    from joserfc.errors import JoseError

    try:
        client = _client()
        token = client.authorize_access_token(claims_options=_id_token_checks(client))
    except (OAuthError, JoseError) as error:
        # Wrong or replayed state, a refused consent, a bad signature, issuer, audience,
        # expiry or nonce: nothing about the person can be trusted.
        log.info("Google sign-in refused: %r", error)
        return _refuse(FAILED, next_target)
    except (requests.RequestException, ValueError, KeyError) as error:
        log.warning("Google sign-in failed talking to Google: %s", error)
        return _refuse(UNAVAILABLE, next_target)
    claims = token.get("userinfo")
    if not claims:
        return _refuse(FAILED, next_target)  # no ID token: an OAuth answer, not OIDC
    credit = current_app.config["SIGNUP_CREDIT_MICROS"]
    try:
        user, created = accounts.google_sign_in(
            db.session, subject=str(claims.get("sub") or ""), email=claims.get("email"),
            email_verified=claims.get("email_verified") in (True, "true"), credit_micros=credit)
        db.session.commit()
    except accounts.AccountError as error:  # refused before anything was written
        return _refuse(error.message, next_target)
    except IntegrityError:
        # The same new Google account signing in twice at once: the unique index decided.
        db.session.rollback()
        return _refuse(FAILED, next_target)
    start_session(user)
    if created and credit:
        flash(f"Welcome to Runbase! Your account has {format_usd(credit)} of free credit.",
              "success")
    return redirect(next_target or url_for("playground.page" if created else "web.dashboard"))
