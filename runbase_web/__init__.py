"""Runbase: a self-hosted gateway and playground for AI image and video generation."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, catalog, blueprints. `config` overrides settings."""
    from . import api, auth, cli, errors_web, files_web, playground, security, state, web
    from .config import load_settings
    from .extensions import csrf, db, login_manager

    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    app.config.update(load_settings(config))
    db.init_app(app)
    csrf.init_app(app)
    csrf.exempt(api.bp)  # Bearer keys, never cookies: CSRF cannot apply
    login_manager.init_app(app)
    state.init_app(app)
    security.init_app(app)
    errors_web.init_app(app)
    cli.init_app(app)
    for blueprint in (api.bp, auth.bp, web.bp, playground.bp, files_web.bp):
        app.register_blueprint(blueprint)
    return app
