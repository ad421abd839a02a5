"""Runbase: a self-hosted gateway and playground for AI image and video generation."""
from __future__ import annotations

import weakref
from inspect import iscoroutinefunction
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, catalog, blueprints. `config` overrides settings."""
    from . import (api, auth, callbacks, cli, errors_web, files_web, hosts, logs, ops, playground,
                   ratelimit, security, state, web)
    from .api_hooks import is_hook, skip_on_api
    from .cookie_session import CookieSessionInterface
    from .config import load_settings
    from .extensions import csrf, db, login_manager
    from .responses import PrintableResponse

    app = RunbaseFlask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    app.response_class = PrintableResponse
    app.session_interface = CookieSessionInterface()
    app.config.update(load_settings(config))
    hosts.init_app(app)
    db.init_app(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)  # Bearer keys, never cookies: CSRF cannot apply
    csrf.exempt(callbacks.bp)  # providers' signed POSTs, never a browser's form
    login_manager.init_app(app)
    skip_on_api(app, "after", is_hook(login_manager._update_remember_cookie))
    state.init_app(app)
    ratelimit.init_app(app)
    _trust_proxies(app)
    security.init_app(app)
    logs.init_app(app)
    errors_web.init_app(app)
    cli.init_app(app)
    for blueprint in (api.bp, auth.bp, web.bp, playground.bp, files_web.bp, callbacks.bp, ops.bp):
        app.register_blueprint(blueprint)
    return app


class RunbaseFlask(Flask):
    """Flask, with each view run once more when its first try met a database connection
    the server had dropped before the view wrote anything (extensions.retry_on_disconnect),
    static files that are closed whatever the client does, and hooks checked for
    `async def` once instead of on every request."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def ensure_sync(self, func):
        """`func` as Flask would run it, remembering which functions are plain `def`.

        Flask asks `inspect.iscoroutinefunction` about every hook and view on every
        request: fifteen times for an API call, a tenth of a cached GET's own CPU.
        The answer cannot change for a function object, so it is kept (weakly) per object.
        """
        try:
            if func in self._sync_functions:
                return func
        except TypeError:  # not weak-referenceable: ask each time, as Flask does
            return super().ensure_sync(func)
        if iscoroutinefunction(func):
            return self.async_to_sync(func)
        self._sync_functions[func] = True
        return func

    def dispatch_request(self):
        """Dispatch, retrying once on a dead pooled connection."""
        from .extensions import retry_on_disconnect
        return retry_on_disconnect(super().dispatch_request)

    def send_static_file(self, filename: str):
        """A static file, closed even when the browser drops the download (a page left
        while its scripts load): Werkzeug's own server (`python app.py`) abandons such
        responses without closing their file, see files_web.close_when_dropped."""
        from .files_web import close_when_dropped
        return close_when_dropped(super().send_static_file(filename))


def _trust_proxies(app: Flask) -> None:
    """Read client IP and scheme from X-Forwarded-* only through N trusted proxy hops.

    With N = 0 (the default) the socket address is the client: a spoofed
    X-Forwarded-For can never pass a key's IP allowlist.
    """
    hops = app.config.get("TRUSTED_PROXIES", 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
