"""/healthz and /readyz (what load balancers and orchestrators probe) and /metrics
(what Prometheus scrapes)."""
from __future__ import annotations

from flask import Response, abort, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError

from .. import health
from ..extensions import db, is_outage
from ..state import WORKER
from .blueprint import bp

_NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers HTTP. Looks at nothing else, so a database outage
    never makes an orchestrator restart healthy web processes."""
    return jsonify({"status": "ok"}), 200, _NO_STORE


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when every dependency this process needs works, else 503; each
    check's verdict and duration in milliseconds."""
    results = health.run_checks(current_app._get_current_object())
    ready = all(result.ok for result in results.values())
    body = {"status": "ok" if ready else "unavailable",
            "checks": {name: result.as_json() for name, result in results.items()}}
    return jsonify(body), 200 if ready else 503, _NO_STORE


@bp.get("/metrics")
def metrics_exposition():
    """Prometheus metrics, with RUNBASE_METRICS_TOKEN as a bearer token; 404 when no token
    is configured (off). The database's numbers always; this process's own (provider
    requests, worker slots) when it runs the embedded worker (`python app.py`)."""
    # Imported here: prometheus-client costs ~20 ms at start-up, and most processes
    # (CLI commands, web processes nobody scrapes) never need it.
    from .. import metrics, metrics_db

    app = current_app._get_current_object()
    token = app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    if not metrics.token_matches(token, request.headers.get("Authorization")):
        return Response("unauthorized\n", 401, {"WWW-Authenticate": "Bearer", **_NO_STORE},
                        mimetype="text/plain")
    try:
        body = metrics_db.database_exposition(db.state(app).engine)
    except DBAPIError as error:
        if not is_outage(error):
            raise
        return Response("database unavailable\n", 503, _NO_STORE, mimetype="text/plain")
    if app.extensions.get(WORKER) is not None:
        body += metrics.in_process_exposition()
    return Response(body, 200, _NO_STORE, content_type=metrics.CONTENT_TYPE_LATEST)
