"""/healthz and /readyz: what load balancers and orchestrators probe."""
from __future__ import annotations

from flask import current_app, jsonify

from .. import health
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
