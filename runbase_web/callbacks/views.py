"""POST /callbacks/<adapter>/<run id>/<token>: one provider callback.

Answers are JSON for the provider's logs: 200 when the callback needs no retry (acted on,
or nothing to act on), 4xx when it must not be acted on (wrong URL, unsigned, stale,
forged), 503 when its signature could not be checked now (keys out of reach; the provider
retries). The body is never trusted before the signature is.
"""
from __future__ import annotations

import logging

from flask import current_app, jsonify, request

from .. import state
from ..extensions import db
from ..services import callbacks
from .blueprint import bp

log = logging.getLogger(__name__)


@bp.post("/<adapter>/<run_id>/<token>")
def receive(adapter: str, run_id: str, token: str):
    """Check one callback and hand it to the worker (services/callbacks.receive)."""
    settings = current_app.config
    try:
        outcome = callbacks.receive(
            db.session, adapter=adapter, run_id=run_id, token=token, headers=request.headers,
            body=request.get_data(cache=False), env=settings["PROVIDER_ENV"],
            secret_key=settings["SECRET_KEY"])
    except callbacks.CallbackRefused as refused:
        db.session.rollback()
        # Logged without the body: the run id and reason are what an operator needs.
        log.warning("callback for run %s from %s refused (%s): %s", run_id, adapter,
                    refused.code, refused.message)
        return jsonify({"error": {"message": refused.message, "code": refused.code}}), \
            refused.status
    db.session.commit()
    if outcome == callbacks.ACCEPTED:
        # The embedded worker, if this process has one; other processes heard NOTIFY.
        state.wake_worker()
    log.info("callback for run %s from %s: %s", run_id, adapter, outcome)
    return jsonify({"received": True, "outcome": outcome})
