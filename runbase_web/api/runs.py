"""POST /api/v1/runs and GET /api/v1/runs/<id>."""
from __future__ import annotations

import json

from flask import current_app, g, jsonify, request

from .. import state
from ..errors import InvalidJson, MissingInput, MissingModel
from ..extensions import db
from ..services import runs
from ..urls import public_base_url
from . import bp
from .auth import require_key
from .serializers import run_to_api


def _json_body() -> dict:
    try:
        body = json.loads(request.get_data(cache=False) or b"")
    except (ValueError, UnicodeDecodeError):
        raise InvalidJson("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidJson("The request body must be a JSON object.")
    return body


@bp.post("/runs")
@require_key
def create_run():
    """Create a run: validate, price, charge, queue."""
    body = _json_body()
    model, raw_input = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise MissingModel("'model' is required and must be a string like 'local/sketch'.")
    if not isinstance(raw_input, dict):
        raise MissingInput("'input' is required and must be an object.")
    run = runs.create_run(db.session, catalog=state.catalog(),
                          provider_env=current_app.config["PROVIDER_ENV"],
                          user_id=g.caller.user_id, api_key_id=g.caller.key_id,
                          model_id=model, raw_input=raw_input, source="api")
    db.session.commit()
    state.wake_worker()
    response = jsonify(run_to_api(run, public_base_url()))
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return response


@bp.get("/runs/<run_id>")
@require_key
def get_run(run_id: str):
    """One run of the caller's account."""
    run = runs.get_run(db.session, g.caller.user_id, run_id)
    return jsonify(run_to_api(run, public_base_url()))
